/// Schedule: layout and loop tiles for each kernel.
///
/// Requires the final op order (after fusion).
///
/// Layout. An inference graph whose every op has a vector kernel (the fused
/// ResNets: convs with their epilogues, max pool, global average pool and the
/// classifier) keeps its activations channel-blocked, NCHW16c: 16 channels of
/// a pixel are one vector (one AVX-512 register, two AVX2 or four NEON ones),
/// channel counts padded to 16. The first conv reads the caller's NCHW input
/// directly (input block 1), and the global average pool writes NCHW again for
/// the classifier, so the layout changes only at the network's edges. Any
/// other graph (the training step, `--no-fuse`, a net with an op outside that
/// set) stays NCHW with the scalar register-tiled kernels below. The training
/// step is blocked the same way: the forward convs, train-mode batch norm and
/// its gradient, both conv gradients (the data gradient is the forward family
/// on ∂y spread by the stride; the weight gradient keeps per-image partials)
/// and the pooling gradients; the classifier, the loss and their gradients
/// stay NCHW.
///
/// Vector tiles. A blocked conv accumulates `pixels` outputs of a row × `blocks`
/// output blocks in vector registers; each step loads `blocks` weight vectors
/// and broadcasts `pixels` input values. The cost model picks, per ISA class,
/// the tile with the most useful FMAs per cycle: a step costs the larger of its
/// FMAs (2 per cycle) and its loads (2 per cycle), a row's last tile is shifted
/// back to end at the row's end (work done twice is wasted), and the
/// accumulators must fit: 24 vectors with 32 registers (AVX-512), 6 with 16
/// (AVX2, where a 16-float vector is two registers and costs two FMAs); and a
/// step takes at least the FMA latency, since each accumulator depends on the
/// previous step; when the weights a tile streams do not fit in L1, their
/// loads come from L2 at about half a line per cycle, which favours more
/// pixels and fewer blocks on deep layers.
///
/// Scalar tiles (NCHW kernels). A direct convolution computes
/// `outChannels` output channels at a time (each input pixel loaded once is
/// used that many times) and, within an output row, `width` outputs
/// accumulated in registers. A padded conv first copies its input into a
/// zero-bordered buffer (arena scratch, live only while the kernel runs), so
/// every window lies inside it and no output needs bounds checks. (The
/// vector Winograd convs and weight gradients read their input in place and
/// skip, or read zeros for, what lies in the border.) The cost
/// model is deliberately simple: the widest of 16/8/4/2/1 that fits the row
/// (so small maps still get a register tile), and 4 channels when the count
/// divides by 4 (2 or 1 otherwise), which keeps 4×16 accumulators within the
/// vector registers of SSE/AVX2 machines. The outer loops (batch × channel
/// blocks) are the parallel ones.
public struct Schedule: Pass {
    public var name: String { "Schedule" }
    /// Measured choices (`--tune`), by `tuneKey`; the cost model decides the rest.
    public var choices: [String: TuneCache.Choice]

    public init(choices: [String: TuneCache.Choice] = [:]) {
        self.choices = choices
    }

    /// Channels per block of the blocked layout.
    public static let block = 16

    public func run(_ input: Graph) throws -> Graph {
        var g = input
        if Self.canBlock(g) { return Self.scheduleBlocked(g, choices: choices) }
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

    /// Ops whose output is blocked in a blocked graph (inference, training).
    static let blockedWriters: Set<Op> = [.conv, .fusedConv, .maxPool, .relu, .add]
    static let trainingBlockedWriters: Set<Op> = [.conv, .batchNormAct, .maxPool, .globalAvgPoolGrad, .batchNormGrad,
                                                  .secondOutput, .convGradData, .maxPoolGrad]

    /// True when the whole graph can run in the blocked layout: every op has a
    /// blocked kernel, blocked tensors are read only where a blocked kernel
    /// expects them, and what leaves the network (the classifier's input, the
    /// output) is NCHW. The data input of a conv (and of its weight gradient)
    /// may be NCHW: the network input.
    static func canBlock(_ g: Graph) -> Bool {
        let writers = g.training ? trainingBlockedWriters : blockedWriters
        func blocked(_ id: Int) -> Bool { writers.contains(g.nodes[id].op) }
        if !g.training && blocked(g.output.id) { return false }
        for node in g.nodes {
            let ins = node.inputs
            switch node.op {
            case .input, .sgdUpdate:
                continue
            case .dense, .softmax, .loss, .denseGrad, .globalAvgPoolGrad:
                if ins.contains(where: blocked) { return false }
            case .conv, .fusedConv:
                if ins.dropFirst().contains(where: { !blocked($0) }) { return false }
            case .convGradWeight:
                if !blocked(ins[0]) { return false }
            case .convGradData:
                let f = g.nodes[node.attrs.forward!].attrs
                if ins.contains(where: { !blocked($0) }) || f.kernel! - 1 - f.padding! < 0 { return false }
            case .maxPool, .relu, .add, .globalAvgPool, .batchNormAct, .batchNormGrad, .secondOutput, .maxPoolGrad:
                if ins.contains(where: { !blocked($0) }) { return false }
            default:
                return false
            }
        }
        return true
    }

    static func scheduleBlocked(_ input: Graph, choices: [String: TuneCache.Choice] = [:]) -> Graph {
        var g = input
        let writers = g.training ? trainingBlockedWriters : blockedWriters
        for i in g.nodes.indices where writers.contains(g.nodes[i].op) || g.nodes[i].op == .convGradWeight {
            g.nodes[i].attrs.layout = .blocked(block)
        }
        for i in g.nodes.indices {
            let node = g.nodes[i]
            func blocks(_ c: Int) -> Int { (c + block - 1) / block }
            switch node.op {
            case .conv, .fusedConv, .convGradData:
                useDirect(&g.nodes[i], g)
            case .convGradWeight:
                // One partial ∂W per group of images (at most one per image), the
                // input read in place; `width` is the rows of a band (see `bandRows`).
                let f = g.nodes[node.attrs.forward!], x = g.shape(f.inputs[0]), y = f.shape!, k = f.attrs.kernel!
                let xc = g.layout(f.inputs[0]).padded(x.c)
                let rows = bandRows(output: y, inputWidth: x.w, inputBlock: g.layout(f.inputs[0]).block,
                                    kernel: k, stride: f.attrs.stride!)
                g.nodes[i].attrs.tile = Tile(outChannels: block, width: rows, paddedInput: false)
                g.nodes[i].attrs.partial = blocks(y.c) * block * xc * k * k
            case .batchNormAct where node.attrs.recomputes == nil:
                // Per-image partial sums in double (a rebuild applies saved scale and shift: none).
                g.nodes[i].attrs.scratch = blocks(node.shape!.c) * block * 2
            case .batchNormGrad:
                g.nodes[i].attrs.scratch = blocks(node.shape!.c) * block * 4
            default:
                continue
            }
        }
        for i in g.nodes.indices where g.nodes[i].attrs.wideTile != nil {
            if let rows = winogradRows(g.nodes[i], g), winogradPays(g.nodes[i], g, rows: rows) {
                useWinograd(&g.nodes[i], g, rows: rows)
            }
            if let key = tuneKey(g.nodes[i], g), let choice = choices[key] { apply(choice, to: &g.nodes[i], g) }
        }
        return g
    }

    /// The weight gradient's band: the most output rows (up to all) whose ∂y
    /// rows and the input rows they read fit in 24 KiB, so that the K × K taps
    /// and the input-channel groups re-read them from L1.
    static func bandRows(output y: Shape, inputWidth wp: Int, inputBlock ib: Int, kernel k: Int, stride s: Int) -> Int {
        func bytes(_ r: Int) -> Int { (r * y.w * block + ((r - 1) * s + k) * wp * ib) * 4 }
        return (1...max(1, y.h)).last { $0 == 1 || bytes($0) <= 24 * 1024 } ?? 1
    }

    /// A vector conv's key for `--tune`: what its speed depends on (shapes,
    /// kernel, stride, padding, input layout, forward or data gradient).
    public static func tuneKey(_ node: Node, _ g: Graph) -> String? {
        guard node.attrs.wideTile != nil, let out = node.shape else { return nil }
        let f = node.op == .convGradData ? g.nodes[node.attrs.forward!] : node
        let x = g.shape(node.inputs[0]), a = f.attrs
        return (node.op == .convGradData ? "convgd" : "conv") + "\(a.kernel!)x\(a.kernel!)s\(a.stride!)p\(a.padding!) "
            + "\(x.c)x\(x.h)x\(x.w) \(g.layout(node.inputs[0])) -> \(out.c)x\(out.h)x\(out.w)"
    }

    /// The schedules `--tune` measures for a vector conv: the cost model's
    /// direct tiles and the runners-up, and Winograd where it applies.
    public static func candidates(_ node: Node, _ g: Graph) -> [TuneCache.Choice] {
        var base = node
        let out = node.shape!, steps = directSteps(node, g)
        let blocks = (out.c + block - 1) / block
        var result: [TuneCache.Choice] = []
        // The best and the runner-up of each ISA class, in pairs: a machine
        // runs one class, so each run measures that class's tile.
        let row = directRow(node, g)
        let wides = rankedTiles(blocks: blocks, width: row, budget: 24, fmaCost: 1, stepsPerTile: steps)
        let narrows = rankedTiles(blocks: blocks, width: row, budget: 6, fmaCost: 2, stepsPerTile: steps)
        for r in 0..<min(2, max(wides.count, narrows.count)) {
            result.append(TuneCache.Choice(algorithm: .direct, wide: wides[min(r, wides.count - 1)],
                                           narrow: narrows[min(r, narrows.count - 1)]))
        }
        if let rows = winogradRows(node, g) {
            useWinograd(&base, g, rows: rows)
            result.append(TuneCache.Choice(algorithm: .winograd(rows: rows), wide: base.attrs.wideTile!, narrow: base.attrs.narrowTile!))
        }
        return result
    }

    /// The weight vectors one output block streams per direct register tile:
    /// input channels (as stored) × K × K.
    static func directSteps(_ node: Node, _ g: Graph) -> Int {
        let k = (node.op == .convGradData ? g.nodes[node.attrs.forward!] : node).attrs.kernel!
        return g.layout(node.inputs[0]).padded(g.shape(node.inputs[0]).c) * k * k
    }

    /// A stride-1 1×1 forward conv on a blocked input maps pixel to pixel, so
    /// its small map (rows under 16 pixels: 14×14, 7×7) is computed as one row
    /// of H·W pixels: a register tile then runs across rows instead of
    /// recomputing the end of each short row (a 4-pixel tile on a 7-pixel row
    /// does 8). Larger maps keep their rows (work items for the threads).
    /// Only with no shortcut or a tensor one, read in the output's layout.
    static func flattensRows(_ node: Node, _ g: Graph) -> Bool {
        let a = node.attrs
        guard [.conv, .fusedConv].contains(node.op), a.kernel == 1, a.stride == 1, a.padding == 0,
              g.layout(node.inputs[0]) != .plain, let out = node.shape, out.w < 16, out.h > 1 else { return false }
        if case .zeroPad? = a.shortcut { return false }
        return true
    }

    /// The pixels a direct conv's register tile runs along: a row, or the whole
    /// map when `flattensRows`.
    static func directRow(_ node: Node, _ g: Graph) -> Int {
        let out = node.shape!
        return flattensRows(node, g) ? out.h * out.w : out.w
    }

    /// The direct schedule of a vector conv or data gradient: the cost model's
    /// tiles for both ISA classes and the padded input copy in scratch. A data
    /// gradient is a stride-1 conv of ∂y, spread by the stride (zeros between
    /// its pixels) and bordered by K−1−P, with the transposed, flipped kernel:
    /// the forward kernel family on that padded copy.
    static func useDirect(_ node: inout Node, _ g: Graph) {
        let out = node.shape!, x = g.shape(node.inputs[0]), steps = directSteps(node, g)
        let blocks = (out.c + block - 1) / block
        node.attrs.algorithm = nil
        let row = directRow(node, g)
        node.attrs.wideTile = vectorTile(blocks: blocks, width: row, budget: 24, fmaCost: 1, stepsPerTile: steps)
        node.attrs.narrowTile = vectorTile(blocks: blocks, width: row, budget: 6, fmaCost: 2, stepsPerTile: steps)
        let xc = g.layout(node.inputs[0]).padded(x.c)
        if node.op == .convGradData {
            let k = g.nodes[node.attrs.forward!].attrs.kernel!
            node.attrs.tile = Tile(outChannels: block, width: 0, paddedInput: true)
            node.attrs.scratch = xc * (out.h + k - 1) * (out.w + k - 1)
        } else {
            let p = node.attrs.padding!
            node.attrs.tile = Tile(outChannels: block, width: 0, paddedInput: p > 0)
            node.attrs.scratch = p > 0 ? xc * (x.h + 2 * p) * (x.w + 2 * p) : nil
        }
    }

    /// Applies a measured choice, if it fits the node (a stale or foreign cache entry is ignored).
    static func apply(_ choice: TuneCache.Choice, to node: inout Node, _ g: Graph) {
        let out = node.shape!, blocks = (out.c + block - 1) / block
        switch choice.algorithm {
        case let .winograd(rows):
            let tiles = rows * ((out.w + 3) / 4)
            guard let fit = winogradRows(node, g), fit == rows,
                  [choice.wide, choice.narrow].allSatisfy({ blocks % $0.blocks == 0 && $0.pixels <= tiles }) else { return }
            useWinograd(&node, g, rows: rows)
        case .direct:
            let row = directRow(node, g)
            guard [choice.wide, choice.narrow].allSatisfy({ blocks % $0.blocks == 0 && $0.pixels <= row }) else { return }
            useDirect(&node, g)
        }
        node.attrs.wideTile = choice.wide
        node.attrs.narrowTile = choice.narrow
    }

    /// Winograd F(4×4, 3×3) applies to a stride-1 3×3 vector conv (or the data
    /// gradient of one) whose input is blocked and whose output is at least one
    /// 4×4 tile; it is used where the cost model (`winogradPays`, per image, so
    /// the same at any batch) finds it faster than the direct conv. Winograd does 36 multiply-adds per
    /// 4×4 outputs and channel pair where the direct conv does 144; its
    /// transforms cost about 100 cycles per tile and channel block each way;
    /// and its transformed weights (4× the direct conv's) are streamed once per
    /// work item, from memory (8 bytes per cycle per core) when they exceed
    /// half the L2: on deep layers with small maps (512 channels at 7×7) that
    /// makes the direct conv faster. Returns the tile rows per work item: the
    /// fewest that divide the tile rows and give at least 6 tiles (a register
    /// tile's worth), so that an item's transformed tiles stay in cache.
    static func winogradRows(_ node: Node, _ g: Graph) -> Int? {
        let f = node.op == .convGradData ? g.nodes[node.attrs.forward!] : node
        let out = node.shape!
        guard f.attrs.kernel == 3, f.attrs.stride == 1, g.layout(node.inputs[0]) != .plain, out.h >= 4, out.w >= 4 else { return nil }
        let th = (out.h + 3) / 4, tw = (out.w + 3) / 4
        return (1...th).first { th % $0 == 0 && $0 * tw >= 6 } ?? th
    }

    /// The cost model's verdict on Winograd with `rows` tile rows per item (see `winogradRows`).
    static func winogradPays(_ node: Node, _ g: Graph, rows: Int) -> Bool {
        let out = node.shape!, x = g.shape(node.inputs[0])
        let th = (out.h + 3) / 4, tw = (out.w + 3) / 4
        let cp = Double((x.c + block - 1) / block * block), ocp = Double((out.c + block - 1) / block * block)
        let direct = Double(out.h * out.w) * ocp / 16 * cp * 9 / 2 / 0.9
        let tiles = Double(th * tw)
        var winograd = tiles * ocp / 16 * cp * 36 / 2 / 0.8 + tiles * (cp + ocp) / 16 * 100
        let weightBytes = 36 * cp * ocp * 4
        if weightBytes > Double(l2Bytes) / 2 { winograd += Double(th / rows) * weightBytes / memoryBytesPerCycle }
        return winograd < direct
    }

    /// L2 per core (2 MiB on Sapphire Rapids; 512 KiB on Zen 3, where the L3 is near),
    /// and what one core streams from L3 or memory per cycle.
    static let l2Bytes = 2 * 1024 * 1024
    static let memoryBytesPerCycle = 8.0

    static func useWinograd(_ node: inout Node, _ g: Graph, rows: Int) {
        let out = node.shape!, x = g.shape(node.inputs[0])
        let cb = (x.c + block - 1) / block, ob = (out.c + block - 1) / block
        let th = (out.h + 3) / 4, tw = (out.w + 3) / 4, chunks = (th + rows - 1) / rows, tiles = rows * tw
        node.attrs.algorithm = .winograd(rows: rows)
        node.attrs.wideTile = vectorTile(blocks: ob, width: tiles, budget: 24, fmaCost: 1, stepsPerTile: cb * block)
        node.attrs.narrowTile = vectorTile(blocks: ob, width: tiles, budget: 6, fmaCost: 2, stepsPerTile: cb * block)
        node.attrs.tile = Tile(outChannels: block, width: 0, paddedInput: false)
        node.attrs.scratch = chunks * 36 * (cb + ob) * tiles * block
    }

    /// L1 data cache a tile's weights may use (of 48 KiB on Sapphire Rapids, 32 KiB
    /// on Zen 3), and the L2 → L1 lines per cycle sustained when they do not fit
    /// (about half the 64 B/cycle peak; Intel's optimisation manual, Zen 3's is similar).
    static let l1Bytes = 32 * 1024
    static let l2LinesPerCycle = 0.5

    /// Cycles from an FMA's issue to its result on current x86 cores (4 on Intel
    /// since Skylake and on AMD Zen 3; Agner Fog's instruction tables).
    static let fmaLatency = 4.0

    /// The register tile with the most useful FMAs per cycle (see the type's
    /// comment); on a tie, the one with fewer output blocks (fewer weight loads
    /// per FMA), then the wider one (its bias loads and stores amortise better).
    /// `stepsPerTile`: the weight vectors one output block streams per tile
    /// (input blocks × K × K × input block).
    static func vectorTile(blocks: Int, width: Int, budget: Int, fmaCost: Int, stepsPerTile: Int) -> VectorTile {
        rankedTiles(blocks: blocks, width: width, budget: budget, fmaCost: fmaCost, stepsPerTile: stepsPerTile)[0]
    }

    /// Every tile that fits, best first by the cost model (ties as `vectorTile` breaks them).
    static func rankedTiles(blocks: Int, width: Int, budget: Int, fmaCost: Int, stepsPerTile: Int) -> [VectorTile] {
        var scored: [(tile: VectorTile, rate: Double)] = []
        for rb in 1...blocks where blocks % rb == 0 && rb <= budget {
            for rw in 1...min(width, budget / rb) {
                let fmas = Double(rb * rw * fmaCost), loads = Double(rb * fmaCost + rw)
                // An accumulator is updated once per step: a step takes at least the FMA latency.
                var cycles = max(max(fmas, loads) / 2, fmaLatency)
                // Weights a tile streams that do not stay in L1 come from L2, a cache line per vector.
                if rb * stepsPerTile * 64 > l1Bytes { cycles = max(cycles, Double(rb) / l2LinesPerCycle) }
                let tiles = (width + rw - 1) / rw
                let useful = Double(rb * rw * fmaCost) * Double(width) / Double(tiles * rw)
                scored.append((VectorTile(blocks: rb, pixels: rw), useful / cycles))
            }
        }
        // Best rate first; on a tie, fewer weight vectors per FMA (less L2 traffic), then the wider tile.
        return scored.sorted {
            if abs($0.rate - $1.rate) > 1e-9 { return $0.rate > $1.rate }
            if $0.tile.blocks != $1.tile.blocks { return $0.tile.blocks < $1.tile.blocks }
            return $0.tile.pixels > $1.tile.pixels
        }.map(\.tile)
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
