import ResNetDSL

/// Turns the DSL's layer tree (`NetworkSpec`) into the flat graph IR.
///
/// A residual block becomes its branch, then its shortcut, then an `add`, so
/// every node's inputs come before it. Names nest with dots (torchvision style);
/// layers without a name (ReLU, pooling, softmax) get `<scope><op><k>`. The
/// shortcut's stride and channels are not known here: shortcut nodes carry
/// `shapeOf` (the branch output) and InferShapes resolves them.
public enum Lower {
    public static func lower(_ spec: NetworkSpec) throws -> Graph {
        var builder = Builder()
        let input = builder.add(.input, name: "input", inputs: [])
        builder.nodes[input].shape = Shape(c: spec.input.channels, h: spec.input.height, w: spec.input.width)
        let out = try builder.lower(spec.layers, from: input, scope: "")
        if out == input { throw CompileError("network '\(spec.name)' has no layers") }
        var graph = Graph(name: spec.name, nodes: builder.nodes)
        graph.bottleneck = try BottleneckStride.checked(graph, declared: spec.bottleneck)
        return graph
    }

    struct Builder {
        var nodes: [Node] = []
        var counters: [String: Int] = [:]

        mutating func add(_ op: Op, name: String, inputs: [Int], attrs: Attributes = Attributes()) -> Int {
            nodes.append(Node(id: nodes.count, op: op, name: name, inputs: inputs, attrs: attrs))
            return nodes.count - 1
        }

        /// Generated name for an unnamed layer: scope + op + running count in that scope.
        mutating func autoName(_ op: String, scope: String) -> String {
            let key = scope + op
            let k = (counters[key] ?? 0) + 1
            counters[key] = k
            return "\(scope)\(op)\(k)"
        }

        mutating func lower(_ layers: [LayerSpec], from start: Int, scope: String) throws -> Int {
            var current = start
            for (position, layer) in layers.enumerated() {
                current = try lower(layer, from: current, scope: scope, position: position)
            }
            return current
        }

        func required(_ value: Int?, _ what: String, _ layer: String) throws -> Int {
            guard let value else { throw CompileError(layer: layer, "missing '\(what)'") }
            return value
        }

        func layerName(_ layer: LayerSpec, scope: String, position: Int) throws -> String {
            guard let name = layer.name, !name.isEmpty else {
                let place = scope.isEmpty ? "the network" : "'\(scope.dropLast())'"
                throw CompileError("\(layer.op) layer #\(position + 1) in \(place) needs a name (its parameters are named after it)")
            }
            return scope + name
        }

        mutating func lower(_ layer: LayerSpec, from x: Int, scope: String, position: Int) throws -> Int {
            var a = Attributes()
            switch layer.op {
            case "conv2d":
                let name = try layerName(layer, scope: scope, position: position)
                a.outChannels = try required(layer.outChannels, "outChannels", name)
                a.kernel = try required(layer.kernel, "kernel", name)
                a.stride = layer.stride ?? 1
                a.padding = layer.padding ?? 0
                a.bias = layer.bias ?? false
                return add(.conv, name: name, inputs: [x], attrs: a)
            case "batchNorm":
                return add(.batchNorm, name: try layerName(layer, scope: scope, position: position), inputs: [x])
            case "dense":
                let name = try layerName(layer, scope: scope, position: position)
                a.outFeatures = try required(layer.outFeatures, "outFeatures", name)
                return add(.dense, name: name, inputs: [x], attrs: a)
            case "relu":
                return add(.relu, name: layer.name.map { scope + $0 } ?? autoName("relu", scope: scope), inputs: [x])
            case "maxPool":
                let name = layer.name.map { scope + $0 } ?? autoName("maxpool", scope: scope)
                a.kernel = try required(layer.kernel, "kernel", name)
                a.stride = layer.stride ?? a.kernel
                a.padding = layer.padding ?? 0
                return add(.maxPool, name: name, inputs: [x], attrs: a)
            case "globalAvgPool":
                return add(.globalAvgPool, name: layer.name.map { scope + $0 } ?? autoName("avgpool", scope: scope), inputs: [x])
            case "softmax":
                return add(.softmax, name: layer.name.map { scope + $0 } ?? autoName("softmax", scope: scope), inputs: [x])
            case "residual":
                let name = try layerName(layer, scope: scope, position: position)
                guard let kindName = layer.shortcut ?? Optional("identity"), let kind = Shortcut(rawValue: kindName) else {
                    throw CompileError(layer: name, "unknown shortcut '\(layer.shortcut ?? "")' (expected identity, zeroPad or projection)")
                }
                guard let body = layer.body, !body.isEmpty else {
                    throw CompileError(layer: name, "residual block has an empty branch")
                }
                let branch = try lower(body, from: x, scope: name + ".")
                let shortcut: Int
                switch kind {
                case .identity:
                    shortcut = x
                case .zeroPad:
                    a.shapeOf = branch
                    shortcut = add(.zeroPad, name: name + ".shortcut", inputs: [x], attrs: a)
                case .projection:
                    a.shapeOf = branch
                    a.kernel = 1
                    a.padding = 0
                    a.bias = false
                    let conv = add(.conv, name: name + ".downsample.0", inputs: [x], attrs: a)
                    shortcut = add(.batchNorm, name: name + ".downsample.1", inputs: [conv])
                }
                return add(.add, name: name + ".add", inputs: [branch, shortcut])
            default:
                let place = scope.isEmpty ? "the network" : "'\(scope.dropLast())'"
                throw CompileError("unknown layer '\(layer.op)' (#\(position + 1) in \(place)); expected conv2d, batchNorm, relu, maxPool, globalAvgPool, dense, softmax or residual")
            }
        }
    }
}
