import Foundation

/// `--emit plan`: the memory plan of both graphs as data (`NAME.plan.json`)
/// and as a picture (`NAME.plan.svg`), at a chosen batch.
///
/// Every figure is in bytes at that batch: the plan is made per image and
/// every buffer, offset and bound scales with the batch (PlanMemory). A
/// buffer's `first` and `last` are the inclusive indices, in the graph's op
/// order, of the op that writes it and of the last op that reads it; a
/// kernel's scratch lives during its own op only.
public enum PlanFiles {
    /// One buffer of one graph's arena, in bytes at the chosen batch.
    public struct Buffer: Codable, Hashable, Sendable {
        public var name: String
        public var offset: Int
        public var bytes: Int
        public var first: Int
        public var last: Int
        /// activation, gradient (of an activation; parameter gradients are not in the arena) or scratch.
        var kind: String = "activation"

        enum CodingKeys: String, CodingKey { case name, offset, bytes, first, last }
    }

    /// One graph's plan (`mode` infer or train).
    public struct Mode: Codable, Sendable {
        public var mode: String
        public var batch: Int
        public var arenaBytes: Int
        public var naiveBytes: Int
        public var lowerBoundBytes: Int
        /// `UNAME_MODEL_BYTES_INFER(batch)` / `_TRAIN(batch)`: the whole model,
        /// parameters and alignment included (a training model's arena is the
        /// larger of the two, so this counts the training arena).
        public var modelBytes: Int
        /// Ops in the graph (the input included): the time axis.
        public var ops: Int
        public var buffers: [Buffer]

        enum CodingKeys: String, CodingKey {
            case mode, batch, ops, buffers
            case arenaBytes = "arena_bytes", naiveBytes = "naive_bytes", lowerBoundBytes = "lower_bound_bytes"
            case modelBytes = "model_bytes"
        }
    }

    /// The plan of `g` (a memory-planned graph) at `batch`.
    public static func mode(_ g: Graph, training: Bool, batch: Int, memory: ModelMemory) -> Mode {
        let plan = g.memory!
        let bytes = 4 * batch
        var buffers = PlanMemory.lifetimes(g).map { b -> Buffer in
            let scratch = b.id >= g.nodes.count
            let node = g.nodes[scratch ? b.id - g.nodes.count : b.id]
            let kind = scratch ? "scratch" : node.op.rawValue.contains("Grad") || node.op == .loss ? "gradient" : "activation"
            return Buffer(name: scratch ? node.name + ".scratch" : node.name, offset: plan.offsets[b.id] * bytes,
                          bytes: b.size * bytes, first: b.first, last: b.last, kind: kind)
        }
        // The weight-gradient partials: a region after the per-sample arena,
        // live while each weight-gradient kernel runs, not scaled by the batch.
        let partials = MemoryPlan.partials(maxBatch: batch)
        var partialBytes = 0
        for node in g.nodes {
            guard let floats = node.attrs.partial else { continue }
            buffers.append(Buffer(name: node.name + ".partials", offset: plan.arenaFloats * bytes,
                                  bytes: 4 * floats * partials, first: node.id, last: node.id, kind: "scratch"))
            partialBytes += 4 * floats * partials
        }
        buffers.sort { ($0.first, $0.offset, $0.name) < ($1.first, $1.offset, $1.name) }
        let live = PlanMemory.liveFloats(buffers.map { PlanMemory.Buffer(id: 0, size: $0.bytes, first: $0.first, last: $0.last) },
                                         steps: g.nodes.count)
        let region = 4 * plan.partialRegionFloats(maxBatch: batch)
        return Mode(mode: training ? "train" : "infer", batch: batch, arenaBytes: plan.arenaFloats * bytes + region,
                    naiveBytes: plan.naiveFloats * bytes + partialBytes, lowerBoundBytes: live.max() ?? 0,
                    modelBytes: memory.modelBytes(batch: batch, training: training), ops: g.nodes.count, buffers: buffers)
    }

    /// Both graphs' plans: inference, then training (none for inference-only C).
    public static func modes(_ graph: Graph, training: Graph?, batch: Int) -> [Mode] {
        let memory = ModelMemory(graph: graph, training: training)
        return [mode(graph, training: false, batch: batch, memory: memory)]
            + (training.map { [mode($0, training: true, batch: batch, memory: memory)] } ?? [])
    }

    /// `NAME.plan.json` and `NAME.plan.svg`.
    public static func files(_ graph: Graph, training: Graph?, batch: Int) throws -> [(name: String, contents: String)] {
        let modes = modes(graph, training: training, batch: batch)
        return [(graph.name + ".plan.json", try json(modes)), (graph.name + ".plan.svg", svg(graph.name, modes))]
    }

    /// A JSON array with one object per mode, keys in a fixed order.
    public static func json(_ modes: [Mode]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(modes), as: UTF8.self) + "\n"
    }

    // MARK: - The picture

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func mib(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? String(format: "%.2f MiB", Double(bytes) / 1048576) : String(format: "%.1f KiB", Double(bytes) / 1024)
    }

    static func px(_ v: Double) -> String { String(format: "%.1f", v) }

    /// Time (op index) across, arena offset down: one box per buffer, labelled
    /// where it is large enough (every box has its figures as a tooltip), the
    /// bytes live at each step as a thin line and the lower bound as a dashed one.
    public static func svg(_ name: String, _ modes: [Mode]) -> String {
        let width = 1200.0, left = 80.0, right = 20.0, panel = 420.0, top = 50.0, gap = 70.0
        let plotW = width - left - right
        let height = top + Double(modes.count) * (panel + gap)
        var out = [
            #"<?xml version="1.0" encoding="UTF-8"?>"#,
            #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(width))" height="\#(Int(height))" viewBox="0 0 \#(Int(width)) \#(Int(height))" font-family="sans-serif" font-size="10">"#,
            "<!-- generated by resnet-compile \(CEmitter.version), emit plan; do not edit -->",
            #"<rect width="100%" height="100%" fill="white"/>"#,
            #"<text x="\#(left)" y="20" font-size="14">\#(escape(name)): memory plan at batch \#(modes.first?.batch ?? 1) (time → op index, offset ↓ bytes)</text>"#,
        ]
        let fill = ["activation": "rgb(158,202,225)", "gradient": "rgb(253,174,107)", "scratch": "rgb(189,189,189)"]
        for (k, m) in modes.enumerated() {
            let y0 = top + Double(k) * (panel + gap) + 20
            let steps = Double(max(1, m.ops))
            let scale = panel / Double(max(1, m.arenaBytes))
            let x = { (step: Int) in left + Double(step) / steps * plotW }
            let y = { (offset: Int) in y0 + Double(offset) * scale }
            let ratio = m.lowerBoundBytes > 0 ? String(format: "%.3f", Double(m.arenaBytes) / Double(m.lowerBoundBytes)) : "-"
            out.append(#"<text x="\#(left)" y="\#(px(y0 - 8))" font-size="12">\#(m.mode): arena \#(mib(m.arenaBytes)) = \#(ratio) × lower bound \#(mib(m.lowerBoundBytes)); naive sum \#(mib(m.naiveBytes)); whole model \#(mib(m.modelBytes)); \#(m.buffers.count) buffers over \#(m.ops) ops</text>"#)
            out.append(#"<rect x="\#(left)" y="\#(px(y0))" width="\#(px(plotW))" height="\#(px(panel))" fill="none" stroke="black"/>"#)
            for b in m.buffers {
                let bx = x(b.first), bw = max(0.5, x(b.last + 1) - bx), by = y(b.offset), bh = max(0.5, Double(b.bytes) * scale)
                out.append(#"<rect x="\#(px(bx))" y="\#(px(by))" width="\#(px(bw))" height="\#(px(bh))" fill="\#(fill[b.kind]!)" stroke="rgb(49,130,189)" stroke-width="0.3"><title>\#(escape(b.name)): \#(b.bytes) bytes at offset \#(b.offset), ops \#(b.first)…\#(b.last)</title></rect>"#)
                if bw >= 36 && bh >= 11 {
                    let chars = max(1, Int(bw / 5.5))
                    let label = b.name.count > chars ? String(b.name.prefix(chars - 1)) + "…" : b.name
                    out.append(#"<text x="\#(px(bx + 2))" y="\#(px(by + min(bh, 20) / 2 + 3.5))" font-size="9">\#(escape(label))</text>"#)
                }
            }
            // Bytes live at each step: where this touches the lower bound is the peak.
            let live = PlanMemory.liveFloats(m.buffers.map { PlanMemory.Buffer(id: 0, size: $0.bytes, first: $0.first, last: $0.last) },
                                             steps: m.ops)
            var points: [String] = []
            for (step, bytes) in live.enumerated() {
                points.append("\(px(x(step))),\(px(y(bytes)))")
                points.append("\(px(x(step + 1))),\(px(y(bytes)))")
            }
            out.append(#"<polyline points="\#(points.joined(separator: " "))" fill="none" stroke="rgb(99,99,99)" stroke-width="1"/>"#)
            let lb = y(m.lowerBoundBytes)
            out.append(#"<line x1="\#(left)" y1="\#(px(lb))" x2="\#(px(left + plotW))" y2="\#(px(lb))" stroke="rgb(222,45,38)" stroke-width="1.5" stroke-dasharray="6,3"/>"#)
            out.append(#"<text x="\#(px(left + plotW - 4))" y="\#(px(lb - 3))" text-anchor="end" fill="rgb(222,45,38)">lower bound \#(mib(m.lowerBoundBytes))</text>"#)
            out.append(#"<text x="\#(left - 4)" y="\#(px(y0 + 4))" text-anchor="end">0</text>"#)
            out.append(#"<text x="\#(left - 4)" y="\#(px(y0 + panel))" text-anchor="end">\#(mib(m.arenaBytes))</text>"#)
            out.append(#"<text x="\#(left)" y="\#(px(y0 + panel + 14))">op 0</text>"#)
            out.append(#"<text x="\#(px(left + plotW))" y="\#(px(y0 + panel + 14))" text-anchor="end">op \#(m.ops - 1)</text>"#)
        }
        let legend = top + Double(modes.count) * (panel + gap) - 24
        var lx = left
        for (kind, color) in [("activation", fill["activation"]!), ("activation gradient", fill["gradient"]!), ("kernel scratch", fill["scratch"]!)] {
            out.append(#"<rect x="\#(px(lx))" y="\#(px(legend - 9))" width="12" height="10" fill="\#(color)"/><text x="\#(px(lx + 16))" y="\#(px(legend))">\#(kind)</text>"#)
            lx += 140
        }
        out.append(#"<line x1="\#(px(lx))" y1="\#(px(legend - 4))" x2="\#(px(lx + 24))" y2="\#(px(legend - 4))" stroke="rgb(99,99,99)"/><text x="\#(px(lx + 28))" y="\#(px(legend))">bytes live at each op</text>"#)
        out.append(#"<line x1="\#(px(lx + 180))" y1="\#(px(legend - 4))" x2="\#(px(lx + 204))" y2="\#(px(legend - 4))" stroke="rgb(222,45,38)" stroke-dasharray="6,3"/><text x="\#(px(lx + 208))" y="\#(px(legend))">lower bound (most bytes live at once)</text>"#)
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
