import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Kernel families name their kernels by their key, so a name means one piece
/// of code wherever it appears: across networks, fused and unfused, inference
/// and training, vector and scalar.
@Suite struct KernelFamilyTests {
    /// An option-A network whose classifier reads the unpooled map, so it is
    /// not blocked: the scalar fused conv and train-mode batch norm read the
    /// shortcut in place. Inputs 12×10 and 11×9 give the same block output
    /// shape (6×5) from different shortcut sources.
    static func optionA(height: Int, width: Int) -> NetworkSpec {
        Network("optiona\(height)x\(width)", input: .image(channels: 3, height: height, width: width)) {
            Conv2D(6, kernel: 3, padding: 1, name: "conv1")
            BatchNorm(name: "bn1")
            ReLU()
            Residual(name: "a", shortcut: .zeroPad) {
                Conv2D(12, kernel: 3, stride: 2, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(12, kernel: 3, padding: 1, name: "conv2")
                BatchNorm(name: "bn2")
            }
            ReLU()
            Dense(5, name: "fc")
        }.spec
    }

    /// Each kernel of a generated C file by name: its comment and body, less
    /// the "used by" line (which layers call it).
    static func kernels(_ source: String) -> [String: String] {
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var result: [String: String] = [:]
        for (i, line) in lines.enumerated() where line.hasPrefix("static void k_") {
            let name = String(line.dropFirst("static void ".count).prefix { $0 != "(" })
            guard let start = lines[..<i].lastIndex(where: { $0.hasPrefix("/*") }),
                  let end = lines[i...].firstIndex(of: "}") else { continue }
            result[name] = lines[start...end].filter { !$0.contains(" * used by ") }.joined(separator: "\n")
        }
        return result
    }

    @Test func equalNamesAreEqualCodeAcrossNetworks() throws {
        let specs = [Self.optionA(height: 12, width: 10), Self.optionA(height: 11, width: 9),
                     TestNetworks.mixnet(), TestNetworks.oddnet(), try ResNet.cifar(depth: 8).spec,
                     try PlainNet.cifar(depth: 8).spec]
        var seen: [String: (code: String, network: String)] = [:]
        var checked = 0
        for fuse in [true, false] {
            let compiler = try Compiler(templates: Templates(directory: CBuild.root + "/templates"),
                                        options: Pipeline.Options(fuse: fuse))
            for spec in specs {
                let source = try compiler.compile(spec).files.first { $0.name.hasSuffix(".c") }!.contents
                for (name, code) in Self.kernels(source) {
                    let label = "\(spec.name)\(fuse ? "" : " --no-fuse")"
                    if let first = seen[name] {
                        checked += 1
                        #expect(first.code == code, "\(name) differs between \(first.network) and \(label)")
                    } else {
                        seen[name] = (code, label)
                    }
                }
            }
        }
        #expect(checked > 50, "too few kernels shared between networks to say anything")
        // The option-A shortcut's source is part of the name.
        #expect(seen.keys.contains { $0.contains("_addzp6x12x10s2") })
        #expect(seen.keys.contains { $0.contains("_addzp6x11x9s2") })
    }
}
