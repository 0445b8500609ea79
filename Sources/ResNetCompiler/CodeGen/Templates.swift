import Foundation
import Mustache

/// The C templates in `templates/`, loaded once.
///
/// They are found, in order, in `$RESNET_COMPILE_TEMPLATES`, in a `templates/`
/// folder beside or above the running executable (an installed tool carries
/// them along), and in the source checkout this library was built from.
public struct Templates: Sendable {
    public let library: MustacheLibrary
    public let directory: String

    public static let environmentKey = "RESNET_COMPILE_TEMPLATES"

    public init(directory: String? = nil) throws {
        guard let dir = directory ?? Self.locate() else {
            throw CompileError("cannot find the C templates (templates/model.c.mustache); set \(Self.environmentKey)")
        }
        var library = MustacheLibrary()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".mustache") }.sorted()
        for file in names {
            let text = try String(contentsOfFile: dir + "/" + file, encoding: .utf8)
            let name = String(file.dropLast(".mustache".count))
            do {
                try library.register(text, named: name)
            } catch {
                throw CompileError("template \(file): \(error)")
            }
        }
        self.library = library
        self.directory = dir
    }

    /// Renders template `name` (file `name.mustache`) with `object`.
    public func render(_ name: String, _ object: Any) throws -> String {
        guard let text = library.render(object, withTemplate: name) else {
            throw CompileError("template \(name).mustache not found in \(directory)")
        }
        return text
    }

    static func locate() -> String? {
        let fm = FileManager.default
        func has(_ dir: String) -> Bool { fm.fileExists(atPath: dir + "/model.c.mustache") }
        if let env = ProcessInfo.processInfo.environment[environmentKey], has(env) { return env }
        var candidates: [URL] = []
        if let exe = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            var dir = exe.deletingLastPathComponent()
            for _ in 0..<6 {
                candidates.append(dir.appendingPathComponent("templates"))
                candidates.append(dir.appendingPathComponent("share/resnet-compile/templates"))
                dir = dir.deletingLastPathComponent()
            }
        }
        // Sources/ResNetCompiler/CodeGen/Templates.swift → repository root.
        let source = URL(fileURLWithPath: #filePath)
        candidates.append(source.deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("templates"))
        return candidates.map(\.path).first(where: has)
    }
}
