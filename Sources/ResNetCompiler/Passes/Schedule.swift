/// Schedule: loop tiles for each convolution kernel.
///
/// Requires the final op order (after fusion). A direct convolution computes
/// `outChannels` output channels at a time (each input pixel loaded once is
/// used that many times) and, within an output row, `width` outputs
/// accumulated in registers. A padded conv first copies its input into a
/// zero-bordered buffer (arena scratch, live only while the kernel runs), so
/// every window lies inside it and no output needs bounds checks. The cost
/// model is deliberately simple: the widest of 16/8/4/2/1 that fits the row
/// (so small maps still get a register tile), and 4 channels when the count
/// divides by 4 (2 or 1 otherwise), which keeps 4×16 accumulators within the
/// vector registers of SSE/AVX2 machines. The outer loops (batch × channel
/// blocks) are the parallel ones.
public struct Schedule: Pass {
    public var name: String { "Schedule" }
    public init() {}

    public func run(_ input: Graph) throws -> Graph {
        var g = input
        for i in g.nodes.indices {
            let node = g.nodes[i]
            switch node.op {
            case .conv, .fusedConv:
                let out = node.shape!, x = g.shape(node.inputs[0]), p = node.attrs.padding!
                g.nodes[i].attrs.tile = Tile(outChannels: Self.channelBlock(out.c), width: Self.widest(out.w), paddedInput: p > 0)
                if p > 0 { g.nodes[i].attrs.scratch = x.c * (x.h + 2 * p) * (x.w + 2 * p) }
            case .convGradData:
                // A stride-1 conv's input gradient is a convolution of dy, padded
                // by K−1−P, with the flipped kernel: the same tiles.
                let f = g.nodes[node.attrs.forward!], dx = node.shape!, dy = f.shape!
                let q = f.attrs.kernel! - 1 - f.attrs.padding!
                guard f.attrs.stride == 1, q >= 0 else { continue }
                g.nodes[i].attrs.tile = Tile(outChannels: Self.channelBlock(dx.c), width: Self.widest(dx.w), paddedInput: true)
                g.nodes[i].attrs.scratch = dy.c * (dy.h + 2 * q) * (dy.w + 2 * q)
            case .convGradWeight:
                // A stride-1 conv's weight gradient: OB output channels × K×K taps of
                // 8-lane accumulators over whole rows of a zero-bordered input copy.
                // The accumulators must stay in registers (at most 18 vectors, with
                // room left for the operands), which rules out 5×5 and 7×7 kernels.
                let f = g.nodes[node.attrs.forward!]
                let x = g.shape(f.inputs[0]), y = f.shape!, p = f.attrs.padding!, taps = f.attrs.kernel! * f.attrs.kernel!
                guard f.attrs.stride == 1, y.w >= 8,
                      let channels = [16, 8, 4, 2, 1].first(where: { $0 * taps <= 18 && y.c % $0 == 0 }) else { continue }
                g.nodes[i].attrs.tile = Tile(outChannels: channels, width: 8, paddedInput: true)
                g.nodes[i].attrs.scratch = x.c * (x.h + 2 * p) * (x.w + 2 * p)
            default:
                continue
            }
        }
        return g
    }

    /// Outputs per register tile: the widest of 16/8/4/2/1 that fits a row.
    static func widest(_ row: Int) -> Int { [16, 8, 4, 2, 1].first { $0 <= row } ?? 1 }

    /// Channels per register tile: 4, or 2, or 1, whichever divides the count.
    static func channelBlock(_ channels: Int) -> Int { channels % 4 == 0 ? 4 : (channels % 2 == 0 ? 2 : 1) }
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
