import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// generated/ holds the compiler's output for zoo networks, checked in. Each is
/// regenerated here and must match byte for byte. To accept a change on
/// purpose: `RESNET_COMPILE_RECORD=1 swift test --filter GoldenTests`.
@Suite(.temporaryFiles) struct GoldenTests {
    static let networks = ["resnet20", "resnet50"]

    static func spec(_ name: String) throws -> NetworkSpec {
        switch name {
        case "resnet20": try BuiltIn.resnet20()
        case "resnet50": try ResNet.imagenet(depth: 50).spec
        default: try TestNetworks.fixture(name)
        }
    }

    @Test(arguments: networks)
    func generatedOutputIsUpToDate(name: String) throws {
        let compiler = try Compiler(templates: Templates(directory: CBuild.root + "/templates"))
        let artifacts = try compiler.compile(try Self.spec(name))
        let dir = CBuild.root + "/generated/" + name
        if ProcessInfo.processInfo.environment["RESNET_COMPILE_RECORD"] != nil {
            try AtomicWriter.write(artifacts.files, to: dir)
            return
        }
        for file in artifacts.files {
            let path = dir + "/" + file.name
            let golden = try String(contentsOfFile: path, encoding: .utf8)
            if golden != file.contents {
                let a = golden.split(separator: "\n", omittingEmptySubsequences: false)
                let b = file.contents.split(separator: "\n", omittingEmptySubsequences: false)
                let line = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
                Issue.record("""
                    \(path) is stale (first difference at line \(line + 1)):
                      golden: \(line < a.count ? a[line] : "<end>")
                      now:    \(line < b.count ? b[line] : "<end>")
                    Regenerate with RESNET_COMPILE_RECORD=1 swift test --filter GoldenTests
                    """)
            }
        }
    }

    @Test func outputIsDeterministicAndHasNoPaths() throws {
        let compiler = try Compiler(templates: Templates(directory: CBuild.root + "/templates"))
        let a = try compiler.compile(try BuiltIn.resnet20()).files
        let b = try compiler.compile(try BuiltIn.resnet20()).files
        #expect(a.map(\.contents) == b.map(\.contents))
        for file in a {
            #expect(!file.contents.contains(CBuild.root), "\(file.name) contains an absolute path")
            #expect(file.contents.contains("do not edit"), "\(file.name) lacks the generated-file notice")
        }
    }

    /// Only the API is exported: everything else in the generated C is static.
    @Test func onlyTheAPIIsExported() throws {
        let dir = try CBuild.temporaryDirectory("symbols")
        let model = try BuiltModel(try BuiltIn.resnet20())
        let object = dir + "/resnet20.o"
        let r = try CBuild.run(CBuild.standard.cc, CBuild.standard.flags + ["-c", model.directory + "/resnet20.c", "-o", object])
        #expect(r.status == 0, "\(r.output)")
        let nm = try CBuild.run("nm", ["-g", "--defined-only", object])
        let symbols = nm.output.split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }.sorted()
        let api = ["create", "create_in", "destroy", "arena_bytes", "init_params", "load", "load_buffer", "save", "infer", "strerror",
                   "last_error", "train_step", "set_optimizer", "set_allreduce", "save_checkpoint", "load_checkpoint"]
        #expect(symbols == api.map { "resnet20_" + $0 }.sorted())
    }
}
