import Foundation
import ResNetCompiler

/// Deterministic random data for tests (splitmix64), so failures reproduce.
public struct TestRandom {
    var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [lo, hi).
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }

    /// Standard normal (Box–Muller).
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }

    public mutating func floats(_ count: Int, scale: Double = 1) -> [Float] {
        (0..<count).map { _ in Float(normal() * scale) }
    }
}

/// Random but well-conditioned parameters for a graph: He-scaled weights and
/// BN statistics far from the identity, so folding and epilogues are exercised.
public func randomParameters(_ graph: Graph, seed: UInt64) -> [String: [Float]] {
    var rng = TestRandom(seed: seed)
    var result: [String: [Float]] = [:]
    for p in graph.parameters {
        let values: [Float]
        switch p.kind {
        case .weight where p.shape.count == 4:
            values = rng.floats(p.count, scale: (2.0 / Double(p.shape[1] * p.shape[2] * p.shape[3])).squareRoot())
        case .weight where p.shape.count == 2:
            values = rng.floats(p.count, scale: 2.0 / Double(p.shape[1]).squareRoot())
        case .weight:
            values = (0..<p.count).map { _ in Float(rng.uniform(0.5, 1.5)) }
        case .bias:
            values = rng.floats(p.count, scale: 0.2)
        case .runningMean:
            values = rng.floats(p.count, scale: 0.2)
        case .runningVar:
            values = (0..<p.count).map { _ in Float(rng.uniform(0.5, 2.0)) }
        }
        result[p.name] = values
    }
    return result
}

/// Writes parameters as a safetensors file in state-dict order (with counters for BNs).
public func writeParameters(_ params: [String: [Float]], graph: Graph, to path: String) throws {
    var tensors: [(String, SafeTensors.Tensor)] = graph.parameters.map { p in (p.name, SafeTensors.Tensor(params[p.name]!, shape: p.shape)) }
    for bn in graph.batchNormNames {
        tensors.append((bn + ".num_batches_tracked", SafeTensors.Tensor(int64: [3], shape: [])))
    }
    try SafeTensors.write(tensors, to: path)
}

/// Largest |a − b| over two arrays of the same length (∞ when the lengths differ).
public func maxAbsDifference<A: BinaryFloatingPoint, B: BinaryFloatingPoint>(_ a: [A], _ b: [B]) -> Double {
    guard a.count == b.count else { return .infinity }
    var worst = 0.0
    for (x, y) in zip(a, b) {
        let d = abs(Double(x) - Double(y))
        if d.isNaN { return .infinity }
        worst = max(worst, d)
    }
    return worst
}
