import Foundation
import Mustache

/// The C templates in `templates/`, loaded once, and the plain C in
/// `runtime/` (the folder beside it) that they embed.
///
/// They are found by `Resources.templates()`: `$RESNET_COMPILE_TEMPLATES`, an
/// installed tool's `share/resnet-compile/templates`, then the checkout.
/// `runtime/` holds C that does not depend on the network (the safetensors
/// reader, atomic saves) and the trainer program; each `runtime/NAME.c` is
/// also a partial `NAME.c` whose text is placed verbatim, so the generated
/// file stays standalone while the trainer and the C tests `#include` the
/// same source.
public struct Templates: Sendable {
    public let library: MustacheLibrary
    public let directory: String
    /// Why `directory` was chosen (`--verbose` prints it).
    public let origin: String
    /// The folder of plain C shared with the trainer (`runtime/` beside `directory`).
    public let runtimeDirectory: String

    /// A folder of templates tried before the installed and development places (`runtime/` must sit beside it).
    public static let environmentKey = "RESNET_COMPILE_TEMPLATES"

    public init(directory: String? = nil) throws {
        let place = try directory.map { Resources.Place(path: $0, why: "given") } ?? Resources.templates()
        let dir = place.path
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
        let runtime = URL(fileURLWithPath: dir).deletingLastPathComponent().appendingPathComponent("runtime").path
        let shared = ((try? FileManager.default.contentsOfDirectory(atPath: runtime)) ?? []).filter { $0.hasSuffix(".c") }.sorted()
        guard shared.contains("runtime.c") else {
            throw CompileError("cannot find the C runtime \(runtime)/runtime.c (it lives beside the templates)")
        }
        for file in shared {
            let text = try String(contentsOfFile: runtime + "/" + file, encoding: .utf8)
            // Registered as a template, so it must hold nothing Mustache would expand.
            if text.contains("{{") {
                throw CompileError("\(runtime)/\(file) is plain C placed verbatim, but it contains '{{'")
            }
            try library.register(text, named: file)
        }
        self.library = library
        self.directory = dir
        self.origin = place.why
        self.runtimeDirectory = runtime
    }

    /// The text of `runtime/NAME` (e.g. `trainer.c`), as it is.
    public func runtimeSource(_ name: String) throws -> String {
        let path = runtimeDirectory + "/" + name
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CompileError("cannot read the C source \(path)")
        }
        return text
    }

    /// Renders template `name` (file `name.mustache`) with `object`.
    public func render(_ name: String, _ object: Any) throws -> String {
        guard let text = library.render(object, withTemplate: name) else {
            throw CompileError("template \(name).mustache not found in \(directory)")
        }
        return text
    }
}
