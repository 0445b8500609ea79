import Foundation
import ResNetCompiler
import ResNetDSL
import ResNetTestSupport
import Testing

/// Malformed JSON graphs, in-process: seeded mutations of valid graphs (byte
/// flips, truncations, deleted fields, swapped types, huge, negative and
/// zero numbers, layers dropped or repeated) go through the decoder and the
/// whole compiler, C emission included. Each must either compile or throw a
/// `CompileError`; a trap would end the test process. Seeded and bounded, so
/// a failure reproduces and the suite stays fast.
@Suite(.temporaryFiles) struct GraphFuzzTests {
    /// SplitMix64: a small generator with a fixed seed, so the mutations are the same every run.
    struct Seeded: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Valid graphs to start from: small, so that a mutation that still
    /// compiles compiles quickly.
    static let seeds: [Data] = {
        let tiny = Network("tiny", input: .image(channels: 3, height: 8, width: 8)) {
            Conv2D(4, kernel: 3, padding: 1, name: "conv1")
            BatchNorm(name: "bn1")
            ReLU()
            Residual(name: "layer1.0", shortcut: .zeroPad) {
                Conv2D(8, kernel: 3, stride: 2, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
            }
            ReLU()
            Residual(name: "layer2.0", shortcut: .projection) {
                Conv2D(8, kernel: 3, padding: 1, name: "conv1")
                BatchNorm(name: "bn1")
                ReLU()
                Conv2D(12, kernel: 1, name: "conv2")
            }
            MaxPool(kernel: 2, stride: 2)
            GlobalAvgPool()
            Dense(3, name: "fc")
            Softmax()
        }.spec
        let stem = Network("stem", input: .image(channels: 1, height: 6, width: 5)) {
            Conv2D(3, kernel: 3, stride: 2, padding: 1, bias: true, name: "conv1")
            ReLU()
            Residual(name: "b") {
                Conv2D(3, kernel: 1, name: "conv1")
            }
            GlobalAvgPool()
            Dense(2, name: "fc")
        }.spec
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [tiny, stem].map { try! encoder.encode(ModelFile(networks: [$0])) }
    }()

    nonisolated(unsafe) static let interesting: [Any] = [0, -1, 1, 2, 3, 7, 16, 1 << 20, 1 << 31, 1 << 40, Int.max, Int.min, -1 << 33,
                                     1.5, 1e300, "3", "", true, NSNull(), [Any](), [String: Any]()]

    /// One structural mutation of a decoded JSON value.
    static func mutate(_ value: Any, _ rng: inout Seeded) -> Any {
        if var object = value as? [String: Any], !object.isEmpty {
            let key = object.keys.sorted()[Int.random(in: 0..<object.count, using: &rng)]
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: object.removeValue(forKey: key)                                           // field deleted
            case 1: object[key] = interesting[Int.random(in: 0..<interesting.count, using: &rng)] // type or value swapped
            case 2: object[["op", "shortcut", "name", "kernel", "padding", "stride"][Int.random(in: 0..<6, using: &rng)]] =
                        ["conv2d", "residual", "maxPool", "dense", "zeroPad", "projection", "bogus", "conv1"][Int.random(in: 0..<8, using: &rng)]
            default: object[key] = mutate(object[key]!, &rng)                                 // deeper
            }
            return object
        }
        if var array = value as? [Any], !array.isEmpty {
            let i = Int.random(in: 0..<array.count, using: &rng)
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: array.remove(at: i)                          // layer dropped
            case 1: array.insert(array[i], at: i)                // layer repeated (names collide)
            case 2: array.swapAt(i, Int.random(in: 0..<array.count, using: &rng))
            default: array[i] = mutate(array[i], &rng)
            }
            return array
        }
        if value is NSNumber || value is Int {
            return interesting[Int.random(in: 0..<interesting.count, using: &rng)]
        }
        return interesting[Int.random(in: 0..<interesting.count, using: &rng)]
    }

    /// A mutated seed: structural mutations, or raw byte damage.
    static func mutant(_ k: Int, _ rng: inout Seeded) -> Data {
        var data = seeds[k % seeds.count]
        switch Int.random(in: 0..<4, using: &rng) {
        case 0:   // byte flips
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                data[Int.random(in: 0..<data.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            }
        case 1:   // truncation
            data = data.prefix(Int.random(in: 0..<data.count, using: &rng))
        default:  // one to three structural mutations
            var value = try! JSONSerialization.jsonObject(with: data)
            for _ in 0..<Int.random(in: 1...3, using: &rng) { value = mutate(value, &rng) }
            data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])) ?? data
        }
        return data
    }

    /// How many mutants (about 4 ms each).
    static let count = 1000

    @Test func mutatedGraphsCompileOrFailCleanly() throws {
        var rng = Seeded(state: 8)
        let compiler = try Compiler()
        var compiled = 0, rejected = 0
        var messages: [String: Int] = [:]
        for k in 0..<Self.count {
            let data = Self.mutant(k, &rng)
            do {
                let model = try ModelLoader.decode(data, source: "fuzz.json")
                for spec in model.networks {
                    let artifacts = try compiler.compile(spec)
                    #expect(artifacts.files.count == 4)
                    #expect(artifacts.files.allSatisfy { !$0.contents.isEmpty })
                }
                compiled += 1
            } catch let error as CompileError {
                rejected += 1
                #expect(!error.description.isEmpty)
                let key = String(error.reason.prefix(24))
                messages[key, default: 0] += 1
            } catch {
                Issue.record("mutant \(k): not a CompileError: \(error)\n\(String(decoding: data, as: UTF8.self))")
            }
        }
        // Both outcomes occur, so the mutations neither all break nor all miss the graphs.
        #expect(compiled > 40 && rejected > 300, "compiled \(compiled), rejected \(rejected)")
        print("GraphFuzzTests: \(Self.count) mutants, \(compiled) compiled, \(rejected) rejected; \(messages.count) kinds of message")
    }
}
