import Foundation
import ResNetCompiler

/// `NAME_init_params(seed)` redone in Swift, operation for operation
/// (runtime.c's `rc_rng_u64`, `rc_rng_uniform`, `rc_ln` and
/// `rc_rng_normal_pair`; model.c.mustache's `init_params`): the bits every
/// build of the generated C must give, whatever the compiler, flags or
/// machine. Every step is an exactly rounded IEEE operation, an integer
/// operation or a conversion, so Swift computes the same values as C.
public enum ReferenceInit {
    /// The initial parameters of `graph` from `seed`, by name.
    public static func parameters(_ graph: Graph, seed: UInt64) -> [String: [Float]] {
        var rng = TestRandom(seed: seed)
        var pair: (Double, Double) = (0, 0)
        var spare = false
        var result: [String: [Float]] = [:]
        for p in graph.parameters {
            let initialiser = Initialiser(p)
            result[p.name] = (0..<p.count).map { _ in
                switch initialiser {
                case let .constant(value):
                    return Float(value)
                case let .uniform(bound):
                    return Float(bound * (2.0 * rng.uniform() - 1.0))
                case let .normal(std):
                    if !spare { pair = normalPair(&rng) }
                    let z = spare ? pair.1 : pair.0
                    spare.toggle()
                    return Float(std * z)
                }
            }
        }
        return result
    }

    /// rc_rng_normal_pair: Marsaglia's polar method on 32-bit integer coordinates.
    public static func normalPair(_ rng: inout TestRandom) -> (Double, Double) {
        while true {
            let w = rng.next()
            let u = Int64(w >> 32) - (1 << 31), v = Int64(w & 0xFFFF_FFFF) - (1 << 31)
            let s = UInt64(u * u) + UInt64(v * v)
            if s == 0 || s >= 1 << 62 { continue }
            let sd = Double(s) * 0x1p-62
            let k = (-2.0 * ln(sd) / sd).squareRoot()
            return (Double(u) * 0x1p-31 * k, Double(v) * 0x1p-31 * k)
        }
    }

    /// rc_ln: ln x for x in [2^-62, 1], the series summed in fixed point.
    public static func ln(_ x: Double) -> Double {
        let oddReciprocal: [Double] = [1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11, 1.0 / 13, 1.0 / 15, 1.0 / 17]
        let ln2Hi = 0x1.62e42fefa4000p-1, ln2Lo = -0x1.8432a1b0e2634p-43
        // frexp: x = m·2^e with m in [1/2, 1).
        var m = x.significand / 2, e = Int(x.exponent) + 1
        if m < 0.70710678118654752440 {
            m *= 2
            e -= 1
        }
        let s = (m - 1) / (m + 1), z = s * s
        var series = Int64(1) << 62
        var zk = 1.0
        for c in oddReciprocal {
            zk *= z
            series += Int64(zk * c * 0x1p62)
        }
        let lnM = 2.0 * s * (Double(series) * 0x1p-62)
        if e == 0 { return lnM }
        let sum = Int64(Double(e) * ln2Hi * 0x1p56) + Int64(Double(e) * ln2Lo * 0x1p56) + Int64(lnM * 0x1p56)
        return Double(sum) * 0x1p-56
    }
}

extension ReferenceInit {
    /// How a weight file saved right after `NAME_init_params(seed)` differs
    /// from `parameters(graph, seed:)`, bit for bit: one line per tensor that
    /// is missing or has elements with other bits (and per batch norm whose
    /// num_batches_tracked is not 0); empty when they agree.
    public static func differences(savedAt path: String, graph: Graph, seed: UInt64) throws -> [String] {
        if graph.parameters.isEmpty { return ["\(graph.name) has no parameters to compare"] }
        let saved = try SafeTensors.read(path)
        let expected = parameters(graph, seed: seed)
        var lines: [String] = []
        for p in graph.parameters {
            guard let got = saved[p.name]?.floats, got.count == p.count else {
                lines.append("\(p.name): missing or mis-sized")
                continue
            }
            let want = expected[p.name]!
            let differing = zip(got, want).filter { $0.bitPattern != $1.bitPattern }
            if let first = differing.first {
                lines.append("\(p.name): \(differing.count) of \(p.count) elements differ (e.g. \(first.0) instead of \(first.1))")
            }
        }
        for bn in graph.batchNormNames where saved[bn + ".num_batches_tracked"]?.ints != [0] {
            lines.append("\(bn).num_batches_tracked is not [0]")
        }
        return lines
    }
}

extension BuiltModel {
    /// Initialises with `seed` in the driver, saves, and compares the file
    /// with `ReferenceInit` (see `ReferenceInit.differences`).
    public func initialWeightDifferences(seed: UInt64) throws -> [String] {
        let path = directory + "/init-\(seed)-\(UUID().uuidString).safetensors"
        let r = try drive(maxBatch: 1, ["init", String(seed), "save", path])
        guard r.status == 0 else { return ["driver failed: \(r.lines.joined(separator: "\n"))"] }
        return try ReferenceInit.differences(savedAt: path, graph: graph, seed: seed)
    }
}
