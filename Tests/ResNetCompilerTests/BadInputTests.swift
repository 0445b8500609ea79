import Foundation
import ResNetCompiler
import ResNetTestSupport
import Testing

/// Invalid model files and JSON graphs given to the real `resnet-compile`:
/// each exits non-zero with its message, leaves the output directory exactly
/// as it was (the files there stay byte for byte, nothing is added), leaves no
/// temporary file (the tool runs with a TMPDIR of its own, which must end
/// empty) and no process of its behind.
@Suite(.temporaryFiles) struct BadInputTests {
    /// One bad input: the file (or none), extra arguments, and fragments the
    /// error output must contain.
    struct Case: CustomTestStringConvertible, Sendable {
        var what: String
        var file: String
        var contents: String?
        /// Raw bytes instead of `contents` (not UTF-8).
        var bytes: [UInt8]? = nil
        var arguments: [String] = []
        var expected: [String]
        /// Where -o points: an existing directory with files in it, a plain
        /// file, or a path below a plain file.
        var output: Output = .directoryWithFiles

        enum Output: Sendable { case directoryWithFiles, plainFile, belowPlainFile }

        var testDescription: String { what }
    }

    /// A JSON model file with one network.
    static func graph(_ layers: String, name: String = "bad", input: String = #"{"channels":3,"height":8,"width":8}"#) -> String {
        #"{"format":"resnet-compile-model","version":1,"networks":[{"name":"\#(name)","input":\#(input),"layers":[\#(layers)]}]}"#
    }

    static let head = #"{"op":"conv2d","name":"conv1","outChannels":4,"kernel":3,"padding":1}"#
    static let tail = #"{"op":"relu"},{"op":"globalAvgPool"},{"op":"dense","name":"fc","outFeatures":3},{"op":"softmax"}"#

    static let swiftCases: [Case] = [
        Case(what: "Swift compile error", file: "model.swift", contents: """
            import ResNetDSL
            let net = Network("tiny", input: .image(channels: 3, height: 8, width: 8)) {
                NoSuchLayer()
            }
            """, expected: ["model.swift:3:", "error:", "does not compile"]),
        Case(what: "Swift type error", file: "model.swift", contents: """
            import ResNetDSL
            let n: Int = "three"
            """, expected: ["model.swift:2:", "error:"]),
        Case(what: "file that never creates a network", file: "model.swift", contents: """
            import ResNetDSL
            let depth = 20
            """, expected: ["model.swift defines no Network"]),
        Case(what: "two networks without --network", file: "model.swift", contents: """
            import ResNetDSL
            let a = try ResNet.cifar(depth: 8, name: "small")
            let b = try PlainNet.cifar(depth: 8)
            """, expected: ["defines 2 networks (small, plain8); pick one with --network NAME"]),
        Case(what: "unknown --network", file: "model.swift", contents: """
            import ResNetDSL
            let a = try ResNet.cifar(depth: 8, name: "small")
            """, arguments: ["--network", "nope"], expected: ["no network named 'nope'; the file defines: small"]),
        Case(what: "fatalError in the model file", file: "model.swift", contents: """
            import ResNetDSL
            let net = try ResNet.cifar(depth: 8)
            fatalError("the model gave up")
            """, expected: ["model.swift crashed when run", "Fatal error: the model gave up"]),
        Case(what: "trap in the model file", file: "model.swift", contents: """
            import ResNetDSL
            let depths = [20, 32]
            let net = try ResNet.cifar(depth: depths[Int(CommandLine.arguments.count) + 5])
            """, expected: ["model.swift crashed when run", "Index out of range"]),
        Case(what: "model file that exits non-zero", file: "model.swift", contents: """
            import Foundation
            import ResNetDSL
            exit(3)
            """, expected: ["model.swift failed when run (exit 3)"]),
        Case(what: "model file that throws", file: "model.swift", contents: """
            import ResNetDSL
            let net = try ResNet.cifar(depth: 21)
            """, expected: ["model.swift threw an error when run", "CIFAR depth must be 6n+2"]),
        Case(what: "model file that runs too long (and starts a process of its own)", file: "model.swift", contents: """
            import Foundation
            import ResNetDSL
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/bin/sh")
            child.arguments = ["-c", "sleep 600; : " + CommandLine.arguments[0]]
            try child.run()
            while true {}
            """, arguments: ["--eval-timeout", "2"],
            expected: ["model.swift:", "took longer than the 2 s limit", "--eval-timeout"]),
        Case(what: "residual shape mismatch (DSL)", file: "model.swift", contents: """
            import ResNetDSL
            let net = Network("tiny", input: .image(channels: 3, height: 8, width: 8)) {
                Conv2D(4, kernel: 3, padding: 1, name: "conv1")
                Residual(name: "layer1.0") {
                    Conv2D(8, kernel: 3, stride: 2, padding: 1, name: "conv1")
                }
            }
            """, expected: ["layer 'layer1.0': identity shortcut, but the branch changes the shape 4×8×8 → 8×4×4"]),
        Case(what: "network name that is a C keyword (DSL)", file: "model.swift", contents: """
            import ResNetDSL
            let net = Network("int", input: .image(channels: 3, height: 8, width: 8)) {
                Conv2D(4, kernel: 1, name: "conv1")
            }
            """, expected: ["network name 'int' cannot be used: it is a C keyword"]),
    ]

    static let fileCases: [Case] = [
        Case(what: "missing file", file: "nothere.json", contents: nil, expected: ["no such model file", "nothere.json"]),
        Case(what: "missing Swift file", file: "nothere.swift", contents: nil, expected: ["no such model file", "nothere.swift"]),
        Case(what: "a directory, not a file", file: "dir.swift", contents: nil, expected: ["dir.swift is a directory, not a model file"]),
        Case(what: "neither .swift nor .json", file: "model.txt", contents: "conv", expected: ["model.txt: expected a .swift model file, a .json graph or an .onnx model"]),
        Case(what: "output path is a file", file: "m.json", contents: graph(head + "," + tail, name: "okay"),
             expected: ["exists and is not a directory"], output: .plainFile),
        Case(what: "output path below a file", file: "m.json", contents: graph(head + "," + tail, name: "okay"),
             expected: ["cannot create"], output: .belowPlainFile),
    ]

    static let jsonCases: [Case] = [
        Case(what: "not JSON", file: "m.json", contents: "{", expected: ["m.json: not valid JSON"]),
        Case(what: "not UTF-8", file: "m.json", bytes: [0xFF, 0xFE, 0x7B], expected: ["m.json: not valid JSON"]),
        Case(what: "another format", file: "m.json", contents: #"{"format":"onnx","version":1,"networks":[]}"#,
             expected: ["format is 'onnx', expected 'resnet-compile-model'"]),
        Case(what: "unsupported version", file: "m.json", contents: #"{"format":"resnet-compile-model","version":9,"networks":[]}"#,
             expected: ["version 9 is not supported"]),
        Case(what: "no networks field", file: "m.json", contents: #"{"format":"resnet-compile-model","version":1}"#,
             expected: ["missing 'networks' at top level"]),
        Case(what: "empty networks", file: "m.json", contents: #"{"format":"resnet-compile-model","version":1,"networks":[]}"#,
             expected: ["defines no network"]),
        Case(what: "unknown layer kind", file: "m.json", contents: graph(head + #",{"op":"conv3d","name":"c3"}"#),
             expected: ["unknown layer 'conv3d' (#2 in the network)"]),
        Case(what: "layer without op", file: "m.json", contents: graph(#"{"name":"conv1","kernel":3}"#),
             expected: ["missing 'op' at .networks[0].layers[0]"]),
        Case(what: "conv without kernel", file: "m.json", contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":4}"#),
             expected: ["layer 'conv1': missing 'kernel'"]),
        Case(what: "conv without name", file: "m.json", contents: graph(#"{"op":"conv2d","outChannels":4,"kernel":3}"#),
             expected: ["conv2d layer #1 in the network needs a name"]),
        Case(what: "mistyped field", file: "m.json", contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":"16","kernel":3}"#),
             expected: ["wrong type at .networks[0].layers[0].outChannels"]),
        Case(what: "mistyped input", file: "m.json", contents: graph(head, input: #"{"channels":3,"height":8}"#),
             expected: ["missing 'width' at .networks[0].input"]),
        Case(what: "number too large for Int", file: "m.json", contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":1e30,"kernel":3}"#),
             expected: ["bad value at .networks[0].layers[0].outChannels"]),
        Case(what: "fractional size", file: "m.json", contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":4.5,"kernel":3}"#),
             expected: [".networks[0].layers[0].outChannels"]),
        Case(what: "unknown shortcut", file: "m.json", contents: graph(head + #",{"op":"residual","name":"b","shortcut":"optionD","body":[{"op":"relu"}]}"#),
             expected: ["layer 'b': unknown shortcut 'optionD'"]),
        Case(what: "residual shape mismatch", file: "m.json",
             contents: graph(head + #",{"op":"residual","name":"layer1.0","body":[{"op":"conv2d","name":"conv1","outChannels":8,"kernel":3,"stride":2,"padding":1}]}"#),
             expected: ["layer 'layer1.0': identity shortcut, but the branch changes the shape"]),
        Case(what: "zero-pad shortcut that drops channels", file: "m.json",
             contents: graph(head + #",{"op":"residual","name":"b","shortcut":"zeroPad","body":[{"op":"conv2d","name":"conv1","outChannels":2,"kernel":3,"stride":2,"padding":1}]}"#),
             expected: ["layer 'b.shortcut': zero-pad shortcut cannot reduce channels (4 → 2)"]),
        Case(what: "empty residual branch", file: "m.json", contents: graph(head + #",{"op":"residual","name":"b","body":[]}"#),
             expected: ["layer 'b': residual block has an empty branch"]),
        Case(what: "feature map emptied by a stride", file: "m.json",
             contents: graph(#"{"op":"conv2d","name":"a","outChannels":4,"kernel":3,"stride":8},{"op":"conv2d","name":"b","outChannels":4,"kernel":3}"#),
             expected: ["layer 'b': kernel 3 with padding 0 does not fit the input height 1"]),
        Case(what: "feature map emptied by a kernel", file: "m.json", contents: graph(#"{"op":"conv2d","name":"stem","outChannels":4,"kernel":9}"#),
             expected: ["layer 'stem': kernel 9 with padding 0 does not fit the input height 8"]),
        Case(what: "feature map emptied by a pool", file: "m.json", contents: graph(head + #",{"op":"globalAvgPool"},{"op":"maxPool","kernel":2}"#),
             expected: ["layer 'maxpool1': kernel 2 with padding 0 does not fit the input height 1"]),
        Case(what: "duplicate layer names", file: "m.json", contents: graph(head + "," + head),
             expected: ["layer 'conv1': duplicate layer name"]),
        Case(what: "duplicate names inside a block", file: "m.json",
             contents: graph(head + #",{"op":"residual","name":"b","body":[{"op":"batchNorm","name":"bn"},{"op":"batchNorm","name":"bn"}]}"#),
             expected: ["layer 'b.bn': duplicate layer name"]),
        Case(what: "zero channels", file: "m.json", contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":0,"kernel":3}"#),
             expected: ["layer 'conv1': output channels must be positive, got 0"]),
        Case(what: "negative kernel", file: "m.json", contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":4,"kernel":-3}"#),
             expected: ["layer 'conv1': kernel size must be positive, got -3"]),
        Case(what: "negative padding", file: "m.json", contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":4,"kernel":3,"padding":-1}"#),
             expected: ["layer 'conv1': padding must not be negative, got -1"]),
        Case(what: "zero stride", file: "m.json", contents: graph(head + #",{"op":"maxPool","kernel":2,"stride":0}"#),
             expected: ["layer 'maxpool1': stride must be positive, got 0"]),
        Case(what: "zero dense features", file: "m.json", contents: graph(head + #",{"op":"dense","name":"fc","outFeatures":0}"#),
             expected: ["layer 'fc': output features must be positive, got 0"]),
        Case(what: "negative input size", file: "m.json", contents: graph(head, input: #"{"channels":3,"height":-8,"width":8}"#),
             expected: ["network 'bad': input size must be positive, got 3×-8×8"]),
        Case(what: "input whose byte count overflows", file: "m.json",
             contents: graph(head, input: #"{"channels":4294967296,"height":4294967296,"width":2}"#),
             expected: ["layer 'input': output 4294967296×4294967296×2 is too large: its byte count would overflow"]),
        Case(what: "activation whose byte count overflows", file: "m.json",
             contents: graph(#"{"op":"conv2d","name":"huge","outChannels":1099511627776,"kernel":3,"padding":1}"#),
             expected: ["layer 'huge': output 1099511627776×8×8 is too large"]),
        Case(what: "weight whose element count overflows Int", file: "m.json",
             contents: graph(#"{"op":"conv2d","name":"wide","outChannels":1048576,"kernel":2097152,"padding":1048576}"#),
             expected: ["layer 'wide': parameter wide.weight (1048576×3×2097152×2097152) is too large"]),
        Case(what: "dense weight whose element count overflows", file: "m.json",
             contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":33554432,"kernel":1},{"op":"dense","name":"fc","outFeatures":33554432}"#),
             expected: ["layer 'fc': parameter fc.weight"]),
        Case(what: "padding whose arithmetic overflows", file: "m.json",
             contents: graph(#"{"op":"conv2d","name":"conv1","outChannels":4,"kernel":3,"padding":4611686018427387904}"#),
             expected: ["layer 'conv1': padding 4611686018427387904 on the input height 8 is too large"]),
        Case(what: "pool padding whose doubling overflows", file: "m.json",
             contents: graph(head + #",{"op":"maxPool","kernel":3,"padding":9223372036854775807}"#),
             expected: ["layer 'maxpool1': padding 9223372036854775807 is more than half the kernel 3"]),
        Case(what: "network name that is not a C identifier", file: "m.json", contents: graph(head, name: "Res-Net"),
             expected: ["network name 'Res-Net' must be a lower-case C identifier"]),
        Case(what: "empty network name", file: "m.json", contents: graph(head, name: ""),
             expected: ["network name '' must be a lower-case C identifier"]),
        Case(what: "network name that is a C keyword", file: "m.json", contents: graph(head, name: "while"),
             expected: ["network name 'while' cannot be used: it is a C keyword"]),
        Case(what: "network name with a reserved leading underscore", file: "m.json", contents: graph(head, name: "_net"),
             expected: ["network name '_net' cannot be used: identifiers beginning with '_'"]),
        Case(what: "network name in the runtime's prefix", file: "m.json", contents: graph(head, name: "rc_st"),
             expected: ["network name 'rc_st' cannot be used: 'rc_' and 'RC_' prefix"]),
        Case(what: "network name whose API collides with libc", file: "m.json", contents: graph(head, name: "timer"),
             expected: ["network name 'timer' cannot be used: timer_create is already a name"]),
        Case(what: "network name whose header guard collides", file: "m.json", contents: graph(head, name: "input"),
             expected: ["network name 'input' cannot be used: INPUT_H is already a name"]),
        Case(what: "network without layers", file: "m.json", contents: graph(""), expected: ["network 'bad' has no layers"]),
    ]

    /// ONNX models: each rejected naming the node, its op and the reason, with nothing written.
    static let onnxCases: [Case] = {
        var sigmoid = ONNXWriter.Model.small()
        sigmoid.nodes[1].op = "Sigmoid"
        var grouped = ONNXWriter.Model.small()
        grouped.nodes[0].attributes.append(.int("group", 2))
        var dynamic = ONNXWriter.Model.small()
        dynamic.inputDims = [.param("N"), .value(3), .param("H"), .param("W")]
        let truncated = Array(ONNXWriter.Model.small().bytes.dropLast(7))
        return [
            Case(what: "missing ONNX file", file: "nothere.onnx", contents: nil, expected: ["no such model file", "nothere.onnx"]),
            Case(what: "ONNX: not a protobuf", file: "m.onnx", contents: "hello", expected: ["m.onnx: malformed ONNX protobuf"]),
            Case(what: "ONNX: truncated", file: "m.onnx", bytes: truncated, expected: ["m.onnx: malformed ONNX protobuf", "runs past the end"]),
            Case(what: "ONNX: unsupported op", file: "m.onnx", bytes: sigmoid.bytes, expected: ["node 'act' (Sigmoid): operator Sigmoid is not supported"]),
            Case(what: "ONNX: unsupported attribute value", file: "m.onnx", bytes: grouped.bytes, expected: ["node 'conv' (Conv): group 2 is not supported"]),
            Case(what: "ONNX: dynamic H", file: "m.onnx", bytes: dynamic.bytes, expected: ["graph input 'x': dimension 2 (H) is symbolic ('H')"]),
        ]
    }()

    static let cases = swiftCases + fileCases + jsonCases + onnxCases

    /// A directory's files and their bytes (recursively).
    static func snapshot(_ path: String) -> [String: Data] {
        let fm = FileManager.default
        var result: [String: Data] = [:]
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { return [:] }
        if !isDirectory.boolValue { return ["": fm.contents(atPath: path) ?? Data()] }
        for name in fm.subpaths(atPath: path) ?? [] {
            result[name] = fm.contents(atPath: path + "/" + name) ?? Data("<directory>".utf8)
        }
        return result
    }

    /// Processes whose command line mentions `marker` (Linux /proc).
    static func processes(mentioning marker: String) -> [String] {
        let fm = FileManager.default
        return (try? fm.contentsOfDirectory(atPath: "/proc"))?.compactMap { entry -> String? in
            guard Int32(entry) != nil, Int32(entry) != getpid(),
                  let data = fm.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let line = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return line.contains(marker) ? "\(entry): \(line)" : nil
        } ?? []
    }

    @Test(arguments: cases)
    func badInputIsAnErrorThatChangesNothing(_ c: Case) throws {
        let dir = try CBuild.temporaryDirectory("bad")
        let fm = FileManager.default
        let path = dir + "/" + c.file
        if let bytes = c.bytes ?? c.contents.map({ Array($0.utf8) }) {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        } else if c.file.hasPrefix("dir") {
            try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        let tmp = dir + "/tmp"
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        var out = dir + "/out"
        switch c.output {
        case .directoryWithFiles:
            try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
            try "keep".write(toFile: out + "/notes.txt", atomically: true, encoding: .utf8)
            try "/* an older build */".write(toFile: out + "/bad.c", atomically: true, encoding: .utf8)
        case .plainFile:
            try "a file".write(toFile: out, atomically: true, encoding: .utf8)
        case .belowPlainFile:
            try "a file".write(toFile: out, atomically: true, encoding: .utf8)
            out += "/sub"
        }
        let watched = dir + "/out"
        let before = Self.snapshot(watched)
        let r = try HostTools.run(CLITests.tool, [path, "-o", out] + c.arguments,
                                  environment: ["XDG_CACHE_HOME": CLITests.emptyCache, "TMPDIR": tmp])
        #expect(r.status == 1, "\(c.what): exit \(r.status)\n\(r.output)")
        for fragment in c.expected {
            #expect(r.output.contains(fragment), "\(c.what): no '\(fragment)' in:\n\(r.output)")
        }
        #expect(r.output.contains("resnet-compile: error: "), "\(c.what): \(r.output)")
        #expect(Self.snapshot(watched) == before, "\(c.what): the output directory changed")
        let leftovers = try fm.contentsOfDirectory(atPath: tmp)
        #expect(leftovers.isEmpty, "\(c.what): temporary files left: \(leftovers)")
        var left = Self.processes(mentioning: dir)
        for _ in 0..<20 where !left.isEmpty {
            usleep(100_000)   // a killed process can take a moment to be reaped
            left = Self.processes(mentioning: dir)
        }
        #expect(left.isEmpty, "\(c.what): processes left: \(left)")
    }

    /// The table covers what issue 8 lists, and is large enough.
    @Test func tableCoversEnoughCases() {
        #expect(Self.cases.count >= 25)
        #expect(Set(Self.cases.map(\.what)).count == Self.cases.count)
    }
}

/// `resnet-compile` stopped by a signal while it evaluates a model file: it
/// exits 128 + signal, and leaves no process (the model program, a process
/// that program started) and no temporary directory behind.
@Suite(.temporaryFiles) struct InterruptTests {
    @Test(arguments: [SIGTERM, SIGINT])
    func signalMidEvaluationKillsEverythingItStarted(_ sig: Int32) throws {
        let dir = try CBuild.temporaryDirectory("signal")
        let fm = FileManager.default
        let tmp = dir + "/tmp", started = dir + "/started"
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        try """
            import Foundation
            import ResNetDSL
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/bin/sh")
            child.arguments = ["-c", "sleep 600; : " + CommandLine.arguments[0]]
            try child.run()
            try CommandLine.arguments[0].write(toFile: "\(started)", atomically: true, encoding: .utf8)
            while true {}
            """.write(toFile: dir + "/loop.swift", atomically: true, encoding: .utf8)
        let tool = Process()
        tool.executableURL = URL(fileURLWithPath: CLITests.tool)
        tool.arguments = [dir + "/loop.swift", "-o", dir + "/out"]
        var env = ProcessInfo.processInfo.environment
        env["TMPDIR"] = tmp
        env["XDG_CACHE_HOME"] = CLITests.emptyCache
        tool.environment = env
        tool.standardOutput = FileHandle.nullDevice
        tool.standardError = FileHandle.nullDevice
        try tool.run()
        // Wait until the model program runs (swiftc first: up to a few minutes on a busy machine).
        let deadline = Date().addingTimeInterval(300)
        while !fm.fileExists(atPath: started) && tool.isRunning && Date() < deadline { usleep(100_000) }
        let program = try #require(try? String(contentsOfFile: started, encoding: .utf8), "the model file never ran")
        #expect(program.hasPrefix(tmp + "/resnet-compile-model-"), "\(program)")
        #expect(!BadInputTests.processes(mentioning: program).isEmpty, "the model program should be running")
        kill(tool.processIdentifier, sig)
        tool.waitUntilExit()
        #expect(tool.terminationReason == .exit && tool.terminationStatus == 128 + sig, "status \(tool.terminationStatus)")
        var left = BadInputTests.processes(mentioning: dir)
        for _ in 0..<20 where !left.isEmpty {
            usleep(100_000)
            left = BadInputTests.processes(mentioning: dir)
        }
        #expect(left.isEmpty, "processes left: \(left)")
        let leftovers = try fm.contentsOfDirectory(atPath: tmp)
        #expect(leftovers.isEmpty, "temporary files left: \(leftovers)")
        #expect(!fm.fileExists(atPath: dir + "/out"))
    }
}
