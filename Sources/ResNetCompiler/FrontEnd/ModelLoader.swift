import Foundation
import ResNetDSL

/// Reads networks from a model file: a Swift file (compiled against ResNetDSL
/// and run, the way SwiftPM evaluates Package.swift) or a JSON `ModelFile`.
public struct ModelLoader {
    /// Where the DSL's module and library are (see `locateDSL`).
    public var dslDirectory: String?
    /// Prints progress lines (compiling, running) when set.
    public var log: (String) -> Void = { _ in }

    public init(dslDirectory: String? = nil) {
        self.dslDirectory = dslDirectory
    }

    public static let dslEnvironmentKey = "RESNET_COMPILE_DSL_DIR"

    /// All networks the file defines.
    public func load(_ path: String) throws -> [NetworkSpec] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw CompileError("no such model file: \(path)")
        }
        if path.hasSuffix(".json") {
            return try Self.decode(try Data(contentsOf: URL(fileURLWithPath: path)), source: path).networks
        }
        guard path.hasSuffix(".swift") else {
            throw CompileError("\(path): expected a .swift model file or a .json graph")
        }
        return try evaluateSwift(path).networks
    }

    /// Decodes a `ModelFile`, with messages that say what is wrong.
    public static func decode(_ data: Data, source: String) throws -> ModelFile {
        let model: ModelFile
        do {
            model = try JSONDecoder().decode(ModelFile.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            throw CompileError("\(source): not valid JSON (\(context.debugDescription))")
        } catch let DecodingError.keyNotFound(key, context) {
            throw CompileError("\(source): missing '\(key.stringValue)' at \(Self.path(context.codingPath))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw CompileError("\(source): wrong type at \(Self.path(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw CompileError("\(source): \(error)")
        }
        guard model.format == ModelFile.formatName else {
            throw CompileError("\(source): format is '\(model.format)', expected '\(ModelFile.formatName)'")
        }
        guard model.version == ModelFile.currentVersion else {
            throw CompileError("\(source): version \(model.version) is not supported (this compiler reads version \(ModelFile.currentVersion))")
        }
        return model
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.isEmpty ? "top level" : keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }

    /// The directory holding `libResNetDSL.so` and `Modules/ResNetDSL.swiftmodule`
    /// (SwiftPM's build folder): the environment, or beside the running executable.
    public static func locateDSL() -> String? {
        let fm = FileManager.default
        func has(_ dir: String) -> Bool {
            fm.fileExists(atPath: dir + "/libResNetDSL.so") || fm.fileExists(atPath: dir + "/libResNetDSL.dylib")
        }
        if let env = ProcessInfo.processInfo.environment[dslEnvironmentKey], has(env) { return env }
        if let exe = Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent().path, has(exe) {
            return exe
        }
        return nil
    }

    /// Compiles `path` with swiftc against ResNetDSL, runs it, and reads back the registry.
    func evaluateSwift(_ path: String) throws -> ModelFile {
        guard let dsl = dslDirectory ?? Self.locateDSL() else {
            throw CompileError("cannot find the ResNetDSL library (libResNetDSL.so); build the package (swift build) or set \(Self.dslEnvironmentKey)")
        }
        let fm = FileManager.default
        let work = fm.temporaryDirectory.appendingPathComponent("resnet-compile-\(UUID().uuidString)")
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: work) }
        let exe = work.appendingPathComponent("model").path
        let json = work.appendingPathComponent("model.json").path
        var modules = dsl + "/Modules"
        if !fm.fileExists(atPath: modules + "/ResNetDSL.swiftmodule") { modules = dsl }
        log("compiling \(path)")
        let compile = try HostTools.run(Self.swiftc(), [
            path, "-module-name", "main", "-I", modules, "-L", dsl, "-lResNetDSL",
            "-Xlinker", "-rpath", "-Xlinker", dsl, "-o", exe,
        ])
        if compile.status != 0 {
            throw CompileError("\(path) does not compile:\n" + compile.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        log("running \(path)")
        let run = try HostTools.run(exe, [], environment: [Registry.outputEnvironmentKey: json])
        if run.status != 0 {
            let output = run.output.trimmingCharacters(in: .whitespacesAndNewlines)
            throw CompileError("\(path) failed when run (exit \(run.status))" + (output.isEmpty ? "" : ":\n" + output))
        }
        guard let data = fm.contents(atPath: json) else {
            throw CompileError("\(path) defines no Network (create one at top level: let net = Network(\"name\", input: ...) { ... })")
        }
        let model = try Self.decode(data, source: path)
        if model.networks.isEmpty { throw CompileError("\(path) defines no Network") }
        return model
    }

    /// swiftc: `$SWIFTC`, or the one on PATH.
    static func swiftc() -> String {
        ProcessInfo.processInfo.environment["SWIFTC"] ?? HostTools.which("swiftc") ?? "/usr/bin/swiftc"
    }
}
