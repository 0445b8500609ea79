import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Invalid models, each with the message a user sees (layer and reason).
@Suite(.temporaryFiles) struct ValidationTests {
    static let cases: [(String, NetworkSpec, String)] = [
        ("identity shortcut that changes the shape",
         Network("bad", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(4, kernel: 3, padding: 1, name: "conv1")
             Residual(name: "layer1.0") {
                 Conv2D(8, kernel: 3, stride: 2, padding: 1, name: "conv1")
             }
         }.spec,
         "layer 'layer1.0': identity shortcut, but the branch changes the shape 4×8×8 → 8×4×4; use shortcut .zeroPad or .projection"),
        ("stride that empties the feature map",
         Network("bad", input: .image(channels: 3, height: 4, width: 4)) {
             Conv2D(4, kernel: 7, stride: 2, name: "stem")
         }.spec,
         "layer 'stem': kernel 7 with padding 0 does not fit the input height 4: the output would be empty"),
        ("pool that empties the feature map",
         Network("bad", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(4, kernel: 3, stride: 4, name: "stem")
             MaxPool(kernel: 3, stride: 2)
         }.spec,
         "layer 'maxpool1': kernel 3 with padding 0 does not fit the input height 2: the output would be empty"),
        ("duplicate parameter name",
         Network("bad", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(4, kernel: 3, padding: 1, name: "conv1")
             Conv2D(4, kernel: 3, padding: 1, name: "conv1")
         }.spec,
         "layer 'conv1': duplicate layer name (also node #1); parameter names such as 'conv1.weight' would collide"),
        ("non-positive channels",
         Network("bad", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(0, kernel: 3, name: "conv1")
         }.spec,
         "layer 'conv1': output channels must be positive, got 0"),
        ("non-positive stride",
         Network("bad", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(4, kernel: 3, stride: 0, name: "conv1")
         }.spec,
         "layer 'conv1': stride must be positive, got 0"),
        ("negative padding",
         Network("bad", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(4, kernel: 3, padding: -1, name: "conv1")
         }.spec,
         "layer 'conv1': padding must not be negative, got -1"),
        ("non-positive input",
         Network("bad", input: .image(channels: 3, height: 0, width: 8)) {
             Conv2D(4, kernel: 1, name: "conv1")
         }.spec,
         "network 'bad': input size must be positive, got 3×0×8"),
        ("byte count overflow",
         Network("bad", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(1 << 40, kernel: 3, padding: 1, name: "huge")
         }.spec,
         "layer 'huge': output 1099511627776×8×8 is too large: its byte count would overflow"),
        ("network name that is not a C identifier",
         Network("Res-Net", input: .image(channels: 3, height: 8, width: 8)) {
             Conv2D(4, kernel: 1, name: "conv1")
         }.spec,
         "network name 'Res-Net' must be a lower-case C identifier ([a-z_][a-z0-9_]*, at most 64 characters)"),
        ("unknown layer",
         NetworkSpec(name: "bad", input: InputSpec(channels: 3, height: 8, width: 8),
                     layers: [LayerSpec(op: "conv3d", name: "c")]),
         "unknown layer 'conv3d' (#1 in the network); expected conv2d, batchNorm, relu, maxPool, globalAvgPool, dense, softmax or residual"),
        ("unknown shortcut",
         NetworkSpec(name: "bad", input: InputSpec(channels: 3, height: 8, width: 8),
                     layers: [LayerSpec(op: "residual", name: "b", shortcut: "optionD", body: [LayerSpec(op: "relu")])]),
         "layer 'b': unknown shortcut 'optionD' (expected identity, zeroPad or projection)"),
        ("conv without a name",
         NetworkSpec(name: "bad", input: InputSpec(channels: 3, height: 8, width: 8),
                     layers: [LayerSpec(op: "residual", name: "layer1.0", body: [LayerSpec(op: "conv2d", outChannels: 3, kernel: 1)])]),
         "conv2d layer #1 in 'layer1.0' needs a name (its parameters are named after it)"),
        ("conv without a kernel",
         NetworkSpec(name: "bad", input: InputSpec(channels: 3, height: 8, width: 8),
                     layers: [LayerSpec(op: "conv2d", name: "c", outChannels: 3)]),
         "layer 'c': missing 'kernel'"),
        ("empty residual branch",
         NetworkSpec(name: "bad", input: InputSpec(channels: 3, height: 8, width: 8),
                     layers: [LayerSpec(op: "residual", name: "b", body: [])]),
         "layer 'b': residual block has an empty branch"),
        ("zero-pad shortcut that would drop channels",
         Network("bad", input: .image(channels: 8, height: 8, width: 8)) {
             Residual(name: "b", shortcut: .zeroPad) {
                 Conv2D(4, kernel: 3, stride: 2, padding: 1, name: "conv1")
             }
         }.spec,
         "layer 'b.shortcut': zero-pad shortcut cannot reduce channels (8 → 4); use .projection"),
        ("no layers",
         NetworkSpec(name: "bad", input: InputSpec(channels: 3, height: 8, width: 8), layers: []),
         "network 'bad' has no layers"),
    ]

    @Test(arguments: cases.indices)
    func invalidModelIsRejectedWithItsMessage(index: Int) throws {
        let (what, spec, message) = Self.cases[index]
        do {
            _ = try Pipeline.inference().run(try Lower.lower(spec))
            Issue.record("\(what): compiled without error")
        } catch let error as CompileError {
            #expect(error.description == message, "\(what)")
        }
    }

    @Test func badJSONNamesWhatIsWrong() throws {
        let cases: [(String, String)] = [
            ("{", "m.json: not valid JSON"),
            (#"{"format":"resnet-compile-model","version":1}"#, "m.json: missing 'networks' at top level"),
            (#"{"format":"onnx","version":1,"networks":[]}"#, "m.json: format is 'onnx', expected 'resnet-compile-model'"),
            (#"{"format":"resnet-compile-model","version":9,"networks":[]}"#, "m.json: version 9 is not supported"),
            (#"{"format":"resnet-compile-model","version":1,"networks":[{"name":"x","input":{"channels":"3","height":1,"width":1},"layers":[]}]}"#,
             "m.json: wrong type at .networks[0].input.channels"),
        ]
        for (text, prefix) in cases {
            do {
                _ = try ModelLoader.decode(Data(text.utf8), source: "m.json")
                Issue.record("accepted: \(text)")
            } catch let error as CompileError {
                #expect(error.description.hasPrefix(prefix), "\(error.description)")
            }
        }
    }

    /// Every network name N for which a name of the C API (N_load, N_H,
    /// N_INPUT_H, …) is already an identifier of the C the compiler emits or
    /// builds with (the templates, runtime/ with the trainer, the checked-in
    /// generated C, and the libc headers they include) is rejected. Recomputed
    /// from the sources, so a new helper or header that clashes fails here.
    @Test func networkNamesThatCollideWithTheGeneratedCAreRejected() throws {
        let fm = FileManager.default
        let header = try String(contentsOfFile: CBuild.root + "/templates/header.h.mustache", encoding: .utf8)
        func suffixes(_ placeholder: String) -> Set<String> {
            Set(header.components(separatedBy: placeholder + "_").dropFirst().compactMap { rest in
                rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }.nilIfEmpty
            })
        }
        let api = suffixes("{{name}}").union(suffixes("{{uname}}"))
        #expect(api.contains("create") && api.contains("INPUT_C") && api.contains("H"), "\(api.sorted())")
        // The C sources: every .c, .h and template outside the build and the tests.
        var sources: [String] = []
        for top in ["templates", "runtime", "generated", "Sources"] {
            for path in fm.subpaths(atPath: CBuild.root + "/" + top) ?? []
            where path.hasSuffix(".c") || path.hasSuffix(".h") || path.hasSuffix(".mustache") {
                sources.append(try String(contentsOfFile: CBuild.root + "/" + top + "/" + path, encoding: .utf8))
            }
        }
        var identifiers = Set<String>()
        var headers = Set<String>()
        for text in sources {
            for word in text.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }) { identifiers.insert(String(word)) }
            for line in text.split(separator: "\n") where line.hasPrefix("#include <") {
                headers.insert(String(line.dropFirst("#include ".count)))
            }
        }
        // The C library's names, as the generated C sees them.
        if HostTools.which("cc") != nil {
            let dir = try CBuild.temporaryDirectory("names")
            // <mpi.h> (the trainer built with -DRC_MPI) is not on the default
            // include path: mpicc names its directories; without OpenMPI it is left out.
            var includes: [String] = []
            if HostTools.which("mpicc") != nil, let r = try? CBuild.run("mpicc", ["--showme:incdirs"]), r.status == 0 {
                includes = r.output.split(whereSeparator: \.isWhitespace).map { "-I" + $0 }
            }
            let probe = "#define _POSIX_C_SOURCE 200809L\n" + headers.sorted()
                .filter { !$0.contains("arm_neon") && (!includes.isEmpty || $0 != "<mpi.h>") }
                .map { "#include \($0)\n" }.joined()
            try probe.write(toFile: dir + "/probe.c", atomically: true, encoding: .utf8)
            let r = try CBuild.run("cc", ["-E", "-march=native"] + includes + [dir + "/probe.c"])
            #expect(r.status == 0, "\(r.output.prefix(2000))")
            for word in r.output.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") }) { identifiers.insert(String(word)) }
        }
        var clashes: [String: String] = [:]
        for id in identifiers {
            for s in api where id.count > s.count + 1 && id.hasSuffix("_" + s) {
                let prefix = String(id.dropLast(s.count + 1)).lowercased()
                // Only prefixes that are network names at all, and not the zoo's own networks.
                guard prefix.first.map({ $0.isLetter || $0 == "_" }) == true,
                      prefix.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }),
                      !["resnet20", "resnet50", "name", "uname", "net", "unet"].contains(prefix),
                      !id.hasPrefix("{{") else { continue }
                if String(id.dropLast(s.count + 1)) == prefix || String(id.dropLast(s.count + 1)) == prefix.uppercased() {
                    clashes[prefix] = id
                }
            }
        }
        #expect(clashes["timer"] == "timer_create" || HostTools.which("cc") == nil, "\(clashes)")
        for (prefix, id) in clashes.sorted(by: { $0.key < $1.key }) {
            #expect(throws: CompileError.self, "network '\(prefix)' would clash with \(id)") {
                try Validate.checkNetworkName(prefix)
            }
        }
    }
}

extension Substring {
    var nilIfEmpty: String? { isEmpty ? nil : String(self) }
}
