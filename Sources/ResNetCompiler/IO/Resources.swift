import Foundation

/// Where the compiler finds the files it reads at run time: the C templates,
/// the plain C of `runtime/` (placed into every generated file, and the
/// trainer's sources), and the ResNetDSL library and Swift module that model
/// files are compiled against.
///
/// An installed tool (`make install PREFIX=P`) finds them relative to its own
/// executable, so it works from any directory and without the checkout:
///
///     P/bin/resnet-compile
///     P/lib/libResNetDSL.so
///     P/lib/swift/linux/ResNetDSL.swiftmodule
///     P/share/resnet-compile/templates/*.mustache
///     P/share/resnet-compile/runtime/*.c
///
/// A tool in SwiftPM's build folder (`swift run`, `.build/debug/resnet-compile`)
/// has the DSL beside it and the templates in the checkout around that
/// folder. Last comes the checkout this library was compiled from (its source
/// path, fixed at build time), so a copied development build still works while
/// that checkout exists. An environment variable puts a folder of its own
/// first (`RESNET_COMPILE_TEMPLATES`, `RESNET_COMPILE_DSL_DIR`). Errors list
/// every place looked, with why it was a candidate.
public enum Resources {
    /// A folder that may hold a resource, and why it was looked at.
    public struct Place: Hashable, Sendable, CustomStringConvertible {
        public var path: String
        public var why: String
        public var description: String { "\(path) (\(why))" }
        public init(path: String, why: String) {
            self.path = path
            self.why = why
        }
    }

    /// The ResNetDSL library's folder and the folder of its `.swiftmodule`.
    public struct DSL: Hashable, Sendable {
        /// Holds `libResNetDSL.so` (linked with -L and found at run time through an rpath).
        public var library: String
        /// Holds `ResNetDSL.swiftmodule` (passed to swiftc with -I).
        public var modules: String
        /// Why this place was chosen (for `--verbose`).
        public var why: String
        public init(library: String, modules: String, why: String) {
            self.library = library
            self.modules = modules
            self.why = why
        }
    }

    /// Where `make install` puts the module, relative to the prefix (Swift's own
    /// toolchain layout keeps platform modules in `lib/swift/<platform>`).
    #if os(macOS)
    public static let installedModuleFolder = "lib/swift/macosx"
    static let libraryName = "libResNetDSL.dylib"
    #else
    public static let installedModuleFolder = "lib/swift/linux"
    static let libraryName = "libResNetDSL.so"
    #endif

    /// The folder of the running executable, symlinks resolved (so a link in
    /// another `bin/` finds the prefix the tool was installed into).
    public static var executableDirectory: URL? {
        Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent()
    }

    /// The checkout this library was compiled from: this file is
    /// `Sources/ResNetCompiler/IO/Resources.swift` in it.
    static let sourceCheckout: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The checkout around SwiftPM's build folder, when the executable is in one
    /// (`CHECKOUT/.build/<triple>/debug/resnet-compile`).
    static func buildFolderCheckout(_ exe: URL) -> URL? {
        let components = exe.pathComponents
        guard let i = components.lastIndex(of: ".build"), i > 0 else { return nil }
        return URL(fileURLWithPath: NSString.path(withComponents: Array(components[..<i])))
    }

    /// The candidate folders for the C templates, in the order they are tried.
    public static func templateCandidates(environment: [String: String] = ProcessInfo.processInfo.environment) -> [Place] {
        var places: [Place] = []
        if let env = environment[Templates.environmentKey], !env.isEmpty {
            places.append(Place(path: env, why: "$\(Templates.environmentKey)"))
        }
        if let exe = executableDirectory {
            places.append(Place(path: exe.deletingLastPathComponent().appendingPathComponent("share/resnet-compile/templates").path,
                                why: "installed, beside \(exe.path)"))
            if let checkout = buildFolderCheckout(exe) {
                places.append(Place(path: checkout.appendingPathComponent("templates").path, why: "the checkout around the build folder"))
            }
        }
        places.append(Place(path: sourceCheckout.appendingPathComponent("templates").path, why: "the checkout resnet-compile was built from"))
        return unique(places)
    }

    /// The candidate places for the DSL, in the order they are tried.
    public static func dslCandidates(environment: [String: String] = ProcessInfo.processInfo.environment) -> [DSL] {
        var places: [DSL] = []
        // A SwiftPM build folder keeps the module in Modules/; other folders may hold it directly.
        func folder(_ dir: String, _ why: String) -> [DSL] {
            [DSL(library: dir, modules: dir + "/Modules", why: why), DSL(library: dir, modules: dir, why: why)]
        }
        if let env = environment[ModelLoader.dslEnvironmentKey], !env.isEmpty {
            places += folder(env, "$\(ModelLoader.dslEnvironmentKey)")
        }
        if let exe = executableDirectory {
            let prefix = exe.deletingLastPathComponent()
            places.append(DSL(library: prefix.appendingPathComponent("lib").path,
                              modules: prefix.appendingPathComponent(installedModuleFolder).path,
                              why: "installed, beside \(exe.path)"))
            places += folder(exe.path, "SwiftPM's build folder, beside the executable")
        }
        for config in ["debug", "release"] {
            places += folder(sourceCheckout.appendingPathComponent(".build/" + config).path, "the checkout resnet-compile was built from")
        }
        var seen = Set<String>()
        return places.filter { seen.insert($0.library + "\n" + $0.modules).inserted }
    }

    /// The first folder holding `model.c.mustache`, or an error naming every place looked.
    public static func templates() throws -> Place {
        if let env = ProcessInfo.processInfo.environment[Templates.environmentKey], !env.isEmpty,
           !FileManager.default.fileExists(atPath: env + "/model.c.mustache") {
            throw CompileError("\(Templates.environmentKey)=\(env) holds no model.c.mustache (it names the folder of the C templates)")
        }
        return try templates(among: templateCandidates())
    }

    /// The first of `candidates` holding `model.c.mustache`, or an error listing them.
    public static func templates(among candidates: [Place]) throws -> Place {
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path + "/model.c.mustache") }) {
            return found
        }
        throw CompileError("cannot find the C templates (model.c.mustache); looked in:\n"
            + candidates.map { "  \($0)" }.joined(separator: "\n")
            + "\ninstall the tool (make install PREFIX=DIR) or set \(Templates.environmentKey)=DIR")
    }

    /// The first place holding both the DSL library and its module, or an
    /// error naming every place looked.
    public static func dsl() throws -> DSL {
        if let env = ProcessInfo.processInfo.environment[ModelLoader.dslEnvironmentKey], !env.isEmpty,
           (try? dsl(among: dslCandidates(environment: [ModelLoader.dslEnvironmentKey: env]).filter { $0.library == env })) == nil {
            throw CompileError("\(ModelLoader.dslEnvironmentKey)=\(env) does not hold \(libraryName) and ResNetDSL.swiftmodule (directly or in Modules/)")
        }
        return try dsl(among: dslCandidates())
    }

    /// The first of `candidates` holding both the library and the module, or an error listing them.
    public static func dsl(among candidates: [DSL]) throws -> DSL {
        let fm = FileManager.default
        if let found = candidates.first(where: {
            fm.fileExists(atPath: $0.library + "/" + libraryName) && fm.fileExists(atPath: $0.modules + "/ResNetDSL.swiftmodule")
        }) {
            return found
        }
        var lines: [String] = []
        for place in candidates {
            let line = place.library == place.modules
                ? "  \(place.library) (\(place.why))"
                : "  \(place.library) with the module in \(place.modules) (\(place.why))"
            if !lines.contains(line) { lines.append(line) }
        }
        throw CompileError("cannot find the ResNetDSL library (\(libraryName) and ResNetDSL.swiftmodule) to compile the model file against; looked in:\n"
            + lines.joined(separator: "\n")
            + "\ninstall the tool (make install PREFIX=DIR), build the package (swift build), or set \(ModelLoader.dslEnvironmentKey)=DIR")
    }

    static func unique(_ places: [Place]) -> [Place] {
        var seen = Set<String>()
        return places.filter { seen.insert($0.path).inserted }
    }
}
