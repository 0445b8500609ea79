import Foundation

/// What `--tune` measured: for each vector conv's key (its shapes, stride,
/// padding and input layout, the ISA the C compiler targets and the thread
/// count), the fastest schedule. Schedule applies an entry when its key
/// matches, and the cost model's choice otherwise, so output is a function of
/// the model and the cache.
public struct TuneCache: Codable, Sendable, Equatable {
    /// A schedule for one conv: the algorithm and the register tiles.
    public struct Choice: Codable, Sendable, Hashable, CustomStringConvertible {
        public var algorithm: Algorithm
        public var wide: VectorTile
        public var narrow: VectorTile
        /// Measured seconds per call of the one-layer benchmark, for the record.
        public var seconds: Double?
        public var description: String { "\(algorithm) avx512=\(wide) avx2=\(narrow)" }
    }

    public var version = 1
    /// Key → choice; keys are `Schedule.tuneKey` + "|" + target.
    public var entries: [String: Choice] = [:]

    public init() {}

    /// Where `--tune` keeps its measurements unless `--tune-cache` says otherwise.
    public static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/resnet-compile/tune.json"
    }

    /// Reads a cache file; a missing file is an empty cache, a malformed one an error.
    public static func load(_ path: String) throws -> TuneCache {
        guard FileManager.default.fileExists(atPath: path) else { return TuneCache() }
        do {
            return try JSONDecoder().decode(TuneCache.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw CompileError("tune cache \(path) is not a resnet-compile tune cache (\(error)); remove it or pick another with --tune-cache")
        }
    }

    /// Writes the cache atomically (sorted keys: the same cache is the same file).
    public func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        do {
            try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CompileError("cannot write tune cache \(path): \(error.localizedDescription)")
        }
    }

    /// The entries for one target (`isa|threads`), by conv key.
    public func choices(for target: String) -> [String: Choice] {
        var result: [String: Choice] = [:]
        for (key, choice) in entries where key.hasSuffix("|" + target) {
            result[String(key.dropLast(target.count + 1))] = choice
        }
        return result
    }
}
