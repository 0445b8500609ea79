import Foundation
import ResNetDSL

/// Reads networks from a model file: a Swift file (compiled against ResNetDSL
/// and run, the way SwiftPM evaluates Package.swift) or a JSON `ModelFile`.
public struct ModelLoader {
    /// Where the DSL's library and module are (default: `Resources.dsl()`).
    public var dsl: Resources.DSL?
    /// Prints progress lines (compiling, running) when set.
    public var log: (String) -> Void = { _ in }
    /// Seconds a model file may take to compile, and then to run (each);
    /// past it the evaluation is stopped and is an error (`--eval-timeout`).
    public var evalTimeout: Double

    public static let defaultEvalTimeout: Double = 120

    public init(dsl: Resources.DSL? = nil, evalTimeout: Double = ModelLoader.defaultEvalTimeout) {
        self.dsl = dsl
        self.evalTimeout = evalTimeout
    }

    /// A folder holding libResNetDSL.so and ResNetDSL.swiftmodule (directly or
    /// in Modules/), tried before the installed and development places.
    public static let dslEnvironmentKey = "RESNET_COMPILE_DSL_DIR"

    /// All networks the file defines.
    public func load(_ path: String) throws -> [NetworkSpec] {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CompileError("no such model file: \(path)")
        }
        guard path.hasSuffix(".json") || path.hasSuffix(".swift") else {
            throw CompileError("\(path): expected a .swift model file, a .json graph or an .onnx model")
        }
        if isDirectory.boolValue { throw CompileError("\(path) is a directory, not a model file") }
        guard fm.isReadableFile(atPath: path), let data = fm.contents(atPath: path) else {
            throw CompileError("cannot read the model file \(path) (permission denied?)")
        }
        if path.hasSuffix(".json") {
            let networks = try Self.decode(data, source: path).networks
            if networks.isEmpty { throw CompileError("\(path) defines no network ('networks' is empty)") }
            return networks
        }
        return try evaluateSwift(path).networks
    }

    /// Decodes a `ModelFile`, with messages that say what is wrong.
    public static func decode(_ data: Data, source: String) throws -> ModelFile {
        let model: ModelFile
        do {
            model = try JSONDecoder().decode(ModelFile.self, from: data)
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw CompileError("\(source): bad value at \(Self.path(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.dataCorrupted(context) {
            // The decoder says "not valid JSON" also for a number that does not fit an Int field.
            if let json = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
               let (place, value) = Self.firstNonInteger(json, path: "") {
                throw CompileError("\(source): bad value at \(place.isEmpty ? "top level" : place): \(value) is not a whole number that fits in 64 bits")
            }
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

    /// The first number in `json` (outside `bias`, the one Bool field) that is
    /// not an integer in Int's range, with its path.
    static func firstNonInteger(_ json: Any, path: String) -> (String, String)? {
        if let object = json as? [String: Any] {
            for key in object.keys.sorted() where key != "bias" {
                if let found = firstNonInteger(object[key]!, path: path + "." + key) { return found }
            }
        } else if let array = json as? [Any] {
            for (i, element) in array.enumerated() {
                if let found = firstNonInteger(element, path: path + "[\(i)]") { return found }
            }
        } else if let number = json as? NSNumber, !(json is String) {
            let d = number.doubleValue
            if !(d.rounded() == d && d >= -9.2e18 && d <= 9.2e18) { return (path, number.stringValue) }
        }
        return nil
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.isEmpty ? "top level" : keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }

    /// Compiles `path` with swiftc against ResNetDSL, runs it, and reads back the registry.
    func evaluateSwift(_ path: String) throws -> ModelFile {
        let dsl = try self.dsl ?? Resources.dsl()
        let fm = FileManager.default
        return try Cleanup.withTemporaryDirectory("model") { work in
            let exe = work + "/model"
            let json = work + "/model.json"
            log("compiling \(path) against ResNetDSL: library in \(dsl.library), module in \(dsl.modules) (\(dsl.why))")
            let compile = try limited(path, "compiling") {
                try HostTools.execute(Self.swiftc(), [
                    path, "-module-name", "main", "-I", dsl.modules, "-L", dsl.library, "-lResNetDSL",
                    "-Xlinker", "-rpath", "-Xlinker", dsl.library, "-o", exe,
                ], environment: ["TMPDIR": work], timeout: evalTimeout)   // its temporaries go where we remove them
            }
            if compile.status != 0 {
                throw CompileError("\(path) does not compile:\n" + compile.output.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            log("running \(path)")
            // No symbolicating backtrace on a crash (slow); the runtime's message stays.
            let run = try limited(path, "running") {
                try HostTools.execute(exe, [], environment: [Registry.outputEnvironmentKey: json, "SWIFT_BACKTRACE": "enable=no", "TMPDIR": work],
                                      timeout: evalTimeout)
            }
            var output = run.output.trimmingCharacters(in: .whitespacesAndNewlines)
            if let signal = run.signal {
                // The runtime's message (file:line: Fatal error: ...) says it; its stack of addresses does not.
                if let trace = output.range(of: "\nCurrent stack trace:") { output = String(output[..<trace.lowerBound]) }
                if output.contains("Error raised at top level") {
                    throw CompileError("\(path) threw an error when run:\n" + output)
                }
                throw CompileError("\(path) crashed when run (signal \(signal), \(String(cString: strsignal(signal))))"
                    + (output.isEmpty ? "" : ":\n" + output))
            }
            if run.status != 0 {
                throw CompileError("\(path) failed when run (exit \(run.status))" + (output.isEmpty ? "" : ":\n" + output))
            }
            guard let data = fm.contents(atPath: json) else {
                throw CompileError("\(path) defines no Network (create one at top level: let net = Network(\"name\", input: ...) { ... })")
            }
            let model = try Self.decode(data, source: path)
            if model.networks.isEmpty { throw CompileError("\(path) defines no Network") }
            return model
        }
    }

    /// Runs one step of evaluating `path`, turning a timeout into an error
    /// that names the file, the step and the limit.
    func limited(_ path: String, _ step: String, _ body: () throws -> HostTools.Finished) throws -> HostTools.Finished {
        do {
            return try body()
        } catch let timeout as HostTools.TimedOut {
            let seconds = timeout.seconds == timeout.seconds.rounded() ? String(Int(timeout.seconds)) : String(timeout.seconds)
            let output = timeout.output.trimmingCharacters(in: .whitespacesAndNewlines)
            throw CompileError("\(path): \(step) the model file took longer than the \(seconds) s limit and was stopped (a model file is a program; raise the limit with --eval-timeout SECONDS)"
                + (output.isEmpty ? "" : ":\n" + output))
        }
    }

    /// swiftc: `$SWIFTC`, or the one on PATH.
    static func swiftc() -> String {
        ProcessInfo.processInfo.environment["SWIFTC"] ?? HostTools.which("swiftc") ?? "/usr/bin/swiftc"
    }
}
