/// Validate: structural checks before anything reads shapes.
///
/// Requires a lowered graph. Checks that the network name is a C identifier
/// (it prefixes every generated symbol), that inputs point backwards, that
/// every size is positive, and that no two layers share a name (their
/// parameters would collide). Errors name the layer and the reason.
public struct Validate: Pass {
    public var name: String { "Validate" }
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        try Self.checkNetworkName(graph.name)
        var seen: [String: Int] = [:]
        for node in graph.nodes {
            for i in node.inputs where i < 0 || i >= node.id {
                throw CompileError(layer: node.name, "input #\(i) is not an earlier node")
            }
            if node.op != .input && node.inputs.isEmpty {
                throw CompileError(layer: node.name, "has no input")
            }
            if let previous = seen[node.name] {
                throw CompileError(layer: node.name, "duplicate layer name (also node #\(previous)); parameter names such as '\(node.name).weight' would collide")
            }
            seen[node.name] = node.id
            let a = node.attrs
            for (value, what) in [(a.outChannels, "output channels"), (a.outFeatures, "output features"),
                                  (a.kernel, "kernel size"), (a.stride, "stride")] {
                if let value, value <= 0 { throw CompileError(layer: node.name, "\(what) must be positive, got \(value)") }
            }
            if let p = a.padding, p < 0 { throw CompileError(layer: node.name, "padding must not be negative, got \(p)") }
            if node.op == .maxPool, let p = a.padding, let k = a.kernel, 2 * p > k {
                throw CompileError(layer: node.name, "padding \(p) is more than half the kernel \(k) (PyTorch rejects this)")
            }
        }
        if let s = graph.input.shape, s.c <= 0 || s.h <= 0 || s.w <= 0 {
            throw CompileError("network '\(graph.name)': input size must be positive, got \(s)")
        }
        return graph
    }

    /// Network names become C identifiers (`NAME_infer`), lower case.
    static func checkNetworkName(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
            && !("0"..."9").contains(name.unicodeScalars.first!)
        if !ok {
            throw CompileError("network name '\(name)' must be a lower-case C identifier ([a-z_][a-z0-9_]*, at most 64 characters)")
        }
    }
}
