import Foundation
import ResNetCompiler
import ResNetTestSupport
import Testing

/// `make install` and `make uninstall`, and the installed tool used as a user
/// uses it: from another directory, finding everything it reads under the
/// prefix and nothing in the checkout.
@Suite(.temporaryFiles) struct InstallTests {
    /// The build folder the tests run from (`.build/debug`, or whichever
    /// configuration built the test bundle): its products are what gets installed.
    static var buildFolder: String { URL(fileURLWithPath: CLITests.tool).deletingLastPathComponent().path }

    /// `make -C CHECKOUT TARGET ARGS`, outside any make that runs the tests.
    func make(_ arguments: [String]) throws -> (status: Int32, output: String) {
        try HostTools.run("make", ["--no-print-directory", "-C", CBuild.root] + arguments,
                          environment: ["MAKEFLAGS": "", "MAKELEVEL": "", "MFLAGS": ""])
    }

    /// Every file under `dir`, relative to it, sorted.
    func files(under dir: String) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: dir)
        var result: [String] = []
        while let path = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                result.append(path)
            }
        }
        return result.sorted()
    }

    /// Installs the already-built products (the debug build the suite runs
    /// from; a release build here would take minutes) into a fresh prefix that
    /// already has a `bin/` of its own, runs the installed tool on the built-in
    /// network, a `.swift` model file, a `.json` graph and an `.onnx` export
    /// from a directory outside the checkout, and uninstalls: the prefix is as
    /// it was before.
    @Test func installedToolCompilesAllFourInputsFromAnotherDirectory() throws {
        let tmp = try CBuild.temporaryDirectory("install")
        let prefix = tmp + "/prefix"
        let fm = FileManager.default
        try fm.createDirectory(atPath: prefix + "/bin", withIntermediateDirectories: true)
        try "not ours\n".write(toFile: prefix + "/bin/other-tool", atomically: true, encoding: .utf8)

        let config = URL(fileURLWithPath: Self.buildFolder).lastPathComponent
        let install = try make(["install", "PREFIX=\(prefix)", "CONFIG=\(config)", "BUILD=no"])
        try #require(install.status == 0, "\(install.output)")
        let installed = files(under: prefix)
        let manifest = try String(contentsOfFile: prefix + "/share/resnet-compile/install_manifest.txt", encoding: .utf8)
        let listed = manifest.split(separator: "\n").filter { $0.hasPrefix("file ") }.map { String($0.dropFirst(5)) }.sorted()
        #expect(listed == installed.filter { $0 != "bin/other-tool" }, "the manifest lists exactly what was installed")
        let templates = try fm.contentsOfDirectory(atPath: CBuild.root + "/templates").filter { $0.hasSuffix(".mustache") }
        let runtime = try fm.contentsOfDirectory(atPath: CBuild.root + "/runtime").filter { $0.hasSuffix(".c") }
        for file in ["bin/resnet-compile", "lib/libResNetDSL.so", Resources.installedModuleFolder + "/ResNetDSL.swiftmodule"]
            + templates.map({ "share/resnet-compile/templates/" + $0 }) + runtime.map({ "share/resnet-compile/runtime/" + $0 }) {
            #expect(installed.contains(file), "\(file) is not installed")
        }

        // A working directory with its own inputs, and the environment
        // pointing nowhere near the checkout.
        let work = tmp + "/work"
        try fm.createDirectory(atPath: work + "/home", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: work + "/tmp", withIntermediateDirectories: true)
        try """
            import ResNetDSL
            let net = try ResNet.cifar(depth: 8, name: "fromswift")
            """.write(toFile: work + "/model.swift", atomically: true, encoding: .utf8)
        try #"""
            {"format":"resnet-compile-model","version":1,"networks":[{"name":"fromjson",
             "input":{"channels":1,"height":8,"width":8},
             "layers":[{"op":"conv2d","name":"conv1","outChannels":4,"kernel":3,"padding":1},
                       {"op":"batchNorm","name":"bn1"},{"op":"relu"},{"op":"globalAvgPool"},
                       {"op":"dense","name":"fc","outFeatures":3},{"op":"softmax"}]}]}
            """#.write(toFile: work + "/model.json", atomically: true, encoding: .utf8)
        try fm.copyItem(atPath: CBuild.root + "/Tests/Fixtures/resnet8a.onnx", toPath: work + "/resnet8a.onnx")
        let environment = [
            "HOME": work + "/home", "TMPDIR": work + "/tmp", "XDG_CACHE_HOME": work + "/home/.cache",
            Templates.environmentKey: "", ModelLoader.dslEnvironmentKey: "",
        ]
        let tool = prefix + "/bin/resnet-compile"
        let runs: [(args: [String], outputs: [String])] = [
            (["-o", "builtin"], ["builtin/resnet20.c", "builtin/resnet20.h", "builtin/module.modulemap", "builtin/resnet20.report"]),
            (["model.swift", "-o", "swift"], ["swift/fromswift.c", "swift/fromswift.h"]),
            (["model.json", "-o", "json"], ["json/fromjson.c", "json/fromjson.h"]),
            (["resnet8a.onnx", "-o", "onnx"], ["onnx/resnet8a.c", "onnx/resnet8a.safetensors"]),
        ]
        var log = ""
        for run in runs {
            let r = try HostTools.run(tool, run.args + ["-v"], environment: environment, in: work)
            log += r.output
            #expect(r.status == 0, "\(run.args): \(r.output)")
            #expect(r.output.contains("templates in \(prefix)/share/resnet-compile/templates (installed"), "\(run.args): \(r.output)")
            #expect(!r.output.contains(CBuild.root), "\(run.args) used the checkout: \(r.output)")
            for file in run.outputs {
                #expect(fm.fileExists(atPath: work + "/" + file), "\(run.args) did not write \(file)")
            }
        }
        #expect(log.contains("compiling model.swift against ResNetDSL: library in \(prefix)/lib, module in \(prefix)/\(Resources.installedModuleFolder) (installed"), "\(log)")
        let golden = try String(contentsOfFile: CBuild.root + "/generated/resnet20/resnet20.c", encoding: .utf8)
        #expect(try String(contentsOfFile: work + "/builtin/resnet20.c", encoding: .utf8) == golden)

        let uninstall = try make(["uninstall", "PREFIX=\(prefix)"])
        #expect(uninstall.status == 0, "\(uninstall.output)")
        #expect(files(under: prefix) == ["bin/other-tool"], "make uninstall left or removed other files")
        #expect(try fm.contentsOfDirectory(atPath: prefix) == ["bin"], "make uninstall left folders it created")
        let again = try make(["uninstall", "PREFIX=\(prefix)"])
        #expect(again.status != 0 && again.output.contains("nothing was installed into \(prefix)"), "\(again.output)")
    }

    /// A resource that is nowhere is an error that lists every place looked, and why.
    @Test func missingResourcesNameEveryPlaceLooked() throws {
        let places = [Resources.Place(path: "/nonexistent/a/templates", why: "installed, beside /nonexistent/a/bin"),
                      Resources.Place(path: "/nonexistent/b/templates", why: "the checkout")]
        let templates = #expect(throws: CompileError.self) { try Resources.templates(among: places) }
        #expect("\(templates!)".contains("looked in:\n  /nonexistent/a/templates (installed, beside /nonexistent/a/bin)\n  /nonexistent/b/templates (the checkout)\n"))
        let dsl = #expect(throws: CompileError.self) {
            try Resources.dsl(among: [Resources.DSL(library: "/nonexistent/lib", modules: "/nonexistent/lib/swift/linux", why: "installed")])
        }
        #expect("\(dsl!)".contains("looked in:\n  /nonexistent/lib with the module in /nonexistent/lib/swift/linux (installed)"), "\(dsl!)")
    }

    /// An environment variable that names a folder without the resource is an
    /// error, not silently passed over.
    @Test func environmentOverridesThatPointNowhereAreErrors() throws {
        let dir = try CBuild.temporaryDirectory("install")
        try "import ResNetDSL\nlet net = try ResNet.cifar(depth: 8)\n".write(toFile: dir + "/m.swift", atomically: true, encoding: .utf8)
        let templates = try HostTools.run(CLITests.tool, ["-o", dir + "/out"], environment: [Templates.environmentKey: dir + "/none"])
        #expect(templates.status == 1 && templates.output.contains("RESNET_COMPILE_TEMPLATES=\(dir)/none holds no model.c.mustache"), "\(templates.output)")
        let dsl = try HostTools.run(CLITests.tool, [dir + "/m.swift", "--emit", "summary"], environment: [ModelLoader.dslEnvironmentKey: dir + "/none"])
        #expect(dsl.status == 1 && dsl.output.contains("RESNET_COMPILE_DSL_DIR=\(dir)/none does not hold libResNetDSL.so"), "\(dsl.output)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
    }
}
