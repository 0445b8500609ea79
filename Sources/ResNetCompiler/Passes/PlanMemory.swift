/// PlanMemory: one arena for every intermediate tensor, shared by liveness.
///
/// Requires the final op order (after fusion). A node's buffer is live from
/// the node that writes it to the last node that reads it. Buffers are placed
/// at the lowest offset that overlaps no buffer whose lifetime intersects
/// (first fit, in the best of a few orders; see `place`), so tensors that are
/// never live together share bytes; in inference a residual block's last conv
/// writes over the shortcut it adds when that dies there (one buffer for both).
/// Sizes are per sample: every activation scales with the batch, so the arena
/// for a batch of n is n times the per-sample arena and offsets scale the same
/// way. The network input is the caller's pointer and the output is written to
/// the caller's buffer, so neither takes arena space. A buffer's size is what
/// its layout stores (a blocked tensor's padded channels included), rounded up
/// to 16 floats, so that every buffer of a 64-byte-aligned arena starts on a
/// cache line (a vector kernel's rows never share a line with another buffer).
public struct PlanMemory: Pass {
    public var name: String { "PlanMemory" }
    public init() {}

    public func run(_ input: Graph) throws -> Graph {
        var g = input
        let readers = g.consumers()
        for node in g.nodes where Self.canWriteOverShortcut(node, g, readers: readers) {
            g.nodes[node.id].attrs.inPlace = true
        }
        g.memory = Self.plan(g)
        return g
    }

    /// A residual block's last conv (inference) may write its output over the
    /// shortcut it adds when that tensor dies there: the add is elementwise,
    /// each element's shortcut is read before its output is stored, and the
    /// vector kernels store every output element once — a Winograd tile's
    /// output transform always, a direct kernel when its register tiles divide
    /// the row (otherwise the last tile of a row is shifted left and would
    /// re-read shortcut elements already overwritten). Without it the block's
    /// input and output need two buffers of the block's largest size.
    static func canWriteOverShortcut(_ node: Node, _ g: Graph, readers: [[Int]]) -> Bool {
        guard !g.training, node.op == .fusedConv, node.attrs.shortcut == .tensor, node.inputs.count == 2,
              let wide = node.attrs.wideTile, let narrow = node.attrs.narrowTile else { return false }
        let sc = node.inputs[1]
        guard g.nodes[sc].op != .input, node.inputs[0] != sc, readers[sc].max() == node.id,
              g.layout(sc) == g.layout(node.id), g.storedFloats(sc) == g.storedFloats(node.id) else { return false }
        if case .winograd? = node.attrs.algorithm { return true }
        let row = Schedule.directRow(node, g)
        return row % wide.pixels == 0 && row % narrow.pixels == 0
    }

    /// Lifetimes [first, last] in node order, for every buffer that lives in the
    /// arena: node outputs (id = node id) and kernel scratch (id = node count +
    /// node id, live only while its kernel runs).
    public static func lifetimes(_ g: Graph) -> [(id: Int, size: Int, first: Int, last: Int)] {
        let scratch = g.nodes.compactMap { node -> (id: Int, size: Int, first: Int, last: Int)? in
            guard let floats = node.attrs.scratch, floats > 0 else { return nil }
            return (g.nodes.count + node.id, roundUp(floats), node.id, node.id)
        }
        return outputLifetimes(g) + scratch
    }

    static func outputLifetimes(_ g: Graph) -> [(id: Int, size: Int, first: Int, last: Int)] {
        // The SGD step lists the kernels that write parameter gradients, so that
        // it runs after them; it reads those gradients in `m->grads`, not their
        // tensor outputs (a BN gradient's ∂z), which may die before it.
        let readers = g.consumers().map { $0.filter { g.nodes[$0].op != .sgdUpdate } }
        // Inference writes its output to the caller's buffer; training has no such output.
        let out = g.training ? -1 : g.nodes.count - 1
        // An in-place output lives in its shortcut's buffer: one buffer, live
        // from the first writer to the last reader of the chain.
        var owner = Array(g.nodes.indices)
        for node in g.nodes where node.attrs.inPlace == true { owner[node.id] = owner[node.inputs[1]] }
        var lastRead = Array(g.nodes.indices)
        for node in g.nodes {
            lastRead[owner[node.id]] = max(lastRead[owner[node.id]], readers[node.id].max() ?? node.id)
        }
        return g.nodes.compactMap { node in
            guard node.op != .input, node.id != out, node.shape != nil, owner[node.id] == node.id else { return nil }
            // A second output is written by its producer's kernel, so it is live from there.
            let first = node.op == .secondOutput ? node.inputs[0] : node.id
            return (node.id, roundUp(g.storedFloats(node.id)), first, lastRead[node.id])
        }
    }

    /// Floats rounded up to a 64-byte cache line.
    static func roundUp(_ floats: Int) -> Int { (floats + 15) / 16 * 16 }

    static func plan(_ g: Graph) -> MemoryPlan {
        let placement = place(lifetimes(g).map { Buffer(id: $0.id, size: $0.size, first: $0.first, last: $0.last) },
                              steps: g.nodes.count)
        var offsets = Array(repeating: -1, count: 2 * g.nodes.count)
        for (id, offset) in placement.offsets { offsets[id] = offset }
        for node in g.nodes where node.attrs.inPlace == true { offsets[node.id] = offsets[node.inputs[1]] }
        return MemoryPlan(offsets: offsets, arenaFloats: placement.arenaFloats, naiveFloats: placement.naiveFloats,
                          lowerBoundFloats: placement.lowerBoundFloats,
                          partialFloats: roundUp(g.nodes.compactMap(\.attrs.partial).max() ?? 0))
    }

    /// A buffer to place: `size` floats live from step `first` to step `last`, inclusive.
    public struct Buffer: Hashable, Sendable {
        public var id: Int, size: Int, first: Int, last: Int
        public init(id: Int, size: Int, first: Int, last: Int) {
            self.id = id
            self.size = size
            self.first = first
            self.last = last
        }
    }

    /// Where `place` put each buffer, and the three figures of the plan.
    public struct Placement: Sendable {
        /// Offset in floats of each buffer, by id.
        public var offsets: [Int: Int]
        public var arenaFloats: Int, naiveFloats: Int, lowerBoundFloats: Int
    }

    /// The planner on bare lifetimes (steps 0..<steps): first fit — each
    /// buffer at the lowest offset that overlaps no placed buffer whose
    /// lifetime meets its own — in each of a few orders (largest first; longest
    /// lived first; largest area of size × lifetime first; earliest first), and
    /// the order whose arena is smallest (the first of them on a tie), since no
    /// one order wins on every graph: largest first can leave holes beside a
    /// peak that the lifetime orders fill (ResNet-50's inference arena: 1.286 →
    /// 1.238 × its lower bound). Deterministic; offsets are multiples of 16
    /// floats when the sizes are.
    public static func place(_ live: [Buffer], steps: Int) -> Placement {
        let orders: [(Buffer, Buffer) -> Bool] = [
            { ($0.size, $1.id) > ($1.size, $0.id) },
            { ($0.last - $0.first, $0.size, $1.id) > ($1.last - $1.first, $1.size, $0.id) },
            { ($0.size * ($0.last - $0.first + 1), $1.id) > ($1.size * ($1.last - $1.first + 1), $0.id) },
            { ($0.first, -$0.size, $0.id) < ($1.first, -$1.size, $1.id) },
        ]
        var best = firstFit(live.sorted(by: orders[0]), steps: steps)
        for order in orders.dropFirst() {
            // Within 1% of the lower bound no order gains much: stop (a deep
            // network's plan has thousands of buffers, and first fit is quadratic).
            if best.arenaFloats <= best.lowerBoundFloats + best.lowerBoundFloats / 100 { break }
            let p = firstFit(live.sorted(by: order), steps: steps)
            if p.arenaFloats < best.arenaFloats { best = p }
        }
        return best
    }

    /// First fit in the given order (see `place`).
    static func firstFit(_ order: [Buffer], steps: Int) -> Placement {
        var offsets: [Int: Int] = [:]
        var placed: [(offset: Int, size: Int, first: Int, last: Int)] = []
        var arena = 0
        for buffer in order {
            let clashes = placed
                .filter { $0.first <= buffer.last && buffer.first <= $0.last }
                .sorted { $0.offset < $1.offset }
            var offset = 0
            for c in clashes where offset + buffer.size > c.offset {
                offset = max(offset, c.offset + c.size)
            }
            offsets[buffer.id] = offset
            placed.append((offset, buffer.size, buffer.first, buffer.last))
            arena = max(arena, offset + buffer.size)
        }
        let naive = order.reduce(0) { $0 + $1.size }
        let profile = liveFloats(order, steps: steps)
        return Placement(offsets: offsets, arenaFloats: arena, naiveFloats: naive, lowerBoundFloats: profile.max() ?? 0)
    }

    /// Floats live at each step: the lower bound is the largest of these, since
    /// buffers live at the same step can share no byte.
    public static func liveFloats(_ live: [Buffer], steps: Int) -> [Int] {
        var delta = Array(repeating: 0, count: steps + 1)
        for b in live {
            delta[b.first] += b.size
            delta[b.last + 1] -= b.size
        }
        var current = 0
        return delta.dropLast().map { d in
            current += d
            return current
        }
    }
}

/// Where each intermediate tensor lives, in floats per sample.
public struct MemoryPlan: Hashable, Codable, Sendable {
    /// Offset of each node's output in the arena (−1: not in the arena), then,
    /// at node count + id, of each kernel's scratch buffer.
    public var offsets: [Int]
    /// Arena size per sample.
    public var arenaFloats: Int
    /// What one buffer per tensor would take.
    public var naiveFloats: Int
    /// The most floats live at one time: no plan can do better.
    public var lowerBoundFloats: Int
    /// Floats of the largest partial ∂W of a weight-gradient kernel (0: none).
    /// The partials do not grow with the batch as activations do — a kernel
    /// sums a group of images into each (`rc_images_per_partial`) — so they
    /// get a region of their own after the per-sample arena, shared by every
    /// weight-gradient kernel (one runs at a time): `partials(maxBatch:)` of them.
    public var partialFloats = 0

    /// The most partials a weight-gradient kernel writes for any batch of at
    /// most `maxBatch` images: ⌈n / G(n)⌉ with G(n) = clamp(⌈n/16⌉, 1, 8)
    /// (`rc_images_per_partial`) is n up to 16, at most 16 from 17 to 128, and
    /// ⌈n/8⌉ from 129 on. The C (`rc_partials_max`, the header's macro) agrees.
    public static func partials(maxBatch b: Int) -> Int { b < 16 ? max(b, 0) : max(16, (b + 7) / 8) }

    /// Floats of the partials region for `maxBatch` images.
    public func partialRegionFloats(maxBatch: Int) -> Int { partialFloats * Self.partials(maxBatch: maxBatch) }
}
