/// Schedule: loop tiles for each convolution kernel.
///
/// Requires the final op order (after fusion). A direct convolution computes
/// `outChannels` output channels at a time (each input pixel loaded once is
/// used that many times) and, within an output row, `width` outputs whose
/// windows lie inside the image, accumulated in registers. The cost model is
/// deliberately simple: the widest of 16/8/4/2/1 that fits the row's interior
/// (so small maps still get a register tile), and 4 channels when the count
/// divides by 4 (2 or 1 otherwise), which keeps 4×16 accumulators within the
/// vector registers of SSE/AVX2 machines. The outer loops (batch × channel
/// blocks) are the parallel ones.
public struct Schedule: Pass {
    public var name: String { "Schedule" }
    public init() {}

    public func run(_ input: Graph) throws -> Graph {
        var g = input
        for i in g.nodes.indices where g.nodes[i].op == .conv || g.nodes[i].op == .fusedConv {
            let node = g.nodes[i]
            let out = node.shape!, x = g.shape(node.inputs[0])
            let p = node.attrs.padding!
            let channels = out.c % 4 == 0 ? 4 : (out.c % 2 == 0 ? 2 : 1)
            // With a zero-bordered copy of the input (arena scratch, live only
            // while the kernel runs) every output is an interior one: whole
            // rows in register tiles, no bounds checks.
            if p > 0 {
                let width = [16, 8, 4, 2, 1].first { $0 <= out.w } ?? 1
                g.nodes[i].attrs.tile = Tile(outChannels: channels, width: width, paddedInput: true)
                g.nodes[i].attrs.scratch = x.c * (x.h + 2 * p) * (x.w + 2 * p)
                continue
            }
            let interior = Self.interior(inWidth: x.w, outWidth: out.w, kernel: node.attrs.kernel!,
                                         stride: node.attrs.stride!, padding: p)
            let span = interior.upperBound - interior.lowerBound
            let width = [16, 8, 4, 2, 1].first { $0 <= span } ?? 1
            g.nodes[i].attrs.tile = Tile(outChannels: channels, width: width)
        }
        // A stride-1 conv's weight gradient: OB output channels × K×K taps of
        // 8-lane accumulators over whole rows of a zero-bordered input copy.
        // The accumulators must stay in registers (at most 18 vectors, with
        // room left for the operands), which rules out 5×5 and 7×7 kernels.
        for i in g.nodes.indices where g.nodes[i].op == .convGradWeight {
            let f = g.nodes[g.nodes[i].attrs.forward!]
            let x = g.shape(f.inputs[0]), y = f.shape!, p = f.attrs.padding!, taps = f.attrs.kernel! * f.attrs.kernel!
            guard f.attrs.stride == 1, y.w >= 8,
                  let channels = [16, 8, 4, 2, 1].first(where: { $0 * taps <= 18 && y.c % $0 == 0 }) else { continue }
            g.nodes[i].attrs.tile = Tile(outChannels: channels, width: 8, paddedInput: true)
            g.nodes[i].attrs.scratch = x.c * (x.h + 2 * p) * (x.w + 2 * p)
        }
        // A stride-1 conv's input gradient is a convolution with the flipped kernel: the same tiles.
        for i in g.nodes.indices where g.nodes[i].op == .convGradData {
            let node = g.nodes[i]
            let f = g.nodes[node.attrs.forward!]
            guard f.attrs.stride == 1 else { continue }
            let dx = node.shape!, dy = f.shape!
            let k = f.attrs.kernel!, q = k - 1 - f.attrs.padding!
            if q >= 0 {
                let width = [16, 8, 4, 2, 1].first { $0 <= dx.w } ?? 1
                let channels = dx.c % 4 == 0 ? 4 : (dx.c % 2 == 0 ? 2 : 1)
                g.nodes[i].attrs.tile = Tile(outChannels: channels, width: width, paddedInput: true)
                g.nodes[i].attrs.scratch = dy.c * (dy.h + 2 * q) * (dy.w + 2 * q)
                continue
            }
            let interior = Self.gradientInterior(inWidth: dx.w, outWidth: dy.w, kernel: f.attrs.kernel!, padding: f.attrs.padding!)
            let span = interior.upperBound - interior.lowerBound
            let width = [16, 8, 4, 2, 1].first { $0 <= span } ?? 1
            let channels = dx.c % 4 == 0 ? 4 : (dx.c % 2 == 0 ? 2 : 1)
            g.nodes[i].attrs.tile = Tile(outChannels: channels, width: width)
        }
        return g
    }

    /// Input columns ix of a stride-1 conv all of whose taps ox = ix + p − kx lie in 0..<outWidth.
    public static func gradientInterior(inWidth: Int, outWidth: Int, kernel: Int, padding: Int) -> Range<Int> {
        let first = max(0, kernel - 1 - padding)
        let last = min(inWidth, outWidth - padding)
        return first < last ? first..<last : 0..<0
    }

    public static let paddedFloats = 65536

    /// Output columns whose whole window (ox·s − p … ox·s − p + k − 1) is inside 0..<inWidth.
    public static func interior(inWidth: Int, outWidth: Int, kernel: Int, stride: Int, padding: Int) -> Range<Int> {
        let first = (padding + stride - 1) / stride
        let span = inWidth - kernel + padding
        let last = span < 0 ? 0 : min(outWidth, span / stride + 1)
        return first < last ? first..<last : 0..<0
    }
}

/// A convolution's loop tile (set by Schedule).
public struct Tile: Hashable, Codable, Sendable {
    /// Output channels computed together.
    public var outChannels: Int
    /// Outputs of a row accumulated in registers.
    public var width: Int
    /// The kernel first copies its input into a zero-bordered buffer.
    public var paddedInput: Bool = false
}
