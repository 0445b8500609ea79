/// The reference interpreter: the oracle every optimised path is checked against.
///
/// It runs the unfused graph (after InferShapes) with naive loops and float64
/// arithmetic throughout, in eval mode (batch norm on running statistics), and
/// follows PyTorch's definitions of each op. It is written for obviousness, not
/// speed: no fusion, no tiling, no buffer reuse.
public struct Interpreter {
    public let graph: Graph
    /// Parameters by torchvision name.
    public let parameters: [String: [Double]]

    /// With parameters in float64 (finite-difference checks perturb them finely).
    public init(graph: Graph, doubleParameters: [String: [Double]]) {
        self.graph = graph
        self.parameters = doubleParameters
    }

    public init(graph: Graph, parameters: [String: [Float]]) throws {
        self.graph = graph
        var p: [String: [Double]] = [:]
        for info in graph.parameters {
            guard let values = parameters[info.name] else {
                throw CompileError(layer: info.layer, "interpreter: parameter \(info.name) missing")
            }
            guard values.count == info.count else {
                throw CompileError(layer: info.layer, "interpreter: parameter \(info.name) has \(values.count) values, expected \(info.count)")
            }
            p[info.name] = values.map(Double.init)
        }
        self.parameters = p
    }

    /// Every node's output for a batch of `n` samples (N×C×H×W, row-major).
    public func run(_ input: [Float], batch n: Int) throws -> [[Double]] {
        var state = TrainState(labels: [])
        return try run(input, batch: n, state: &state)
    }

    func run(_ input: [Float], batch n: Int, state: inout TrainState) throws -> [[Double]] {
        let inShape = graph.shape(0)
        guard input.count == n * inShape.count else {
            throw CompileError("interpreter: input has \(input.count) values, expected \(n)×\(inShape.count)")
        }
        var values: [[Double]] = []
        values.reserveCapacity(graph.nodes.count)
        for node in graph.nodes {
            if let y = try evaluateTraining(node, values, n, &state) {
                values.append(y)
            } else {
                values.append(try evaluate(node, values, input, n))
            }
        }
        return values
    }

    /// The network output (probabilities after a final softmax).
    public func forward(_ input: [Float], batch n: Int) throws -> [Double] {
        try run(input, batch: n).last!
    }

    func param(_ name: String) -> [Double] { parameters[name]! }

    func evaluate(_ node: Node, _ values: [[Double]], _ input: [Float], _ n: Int) throws -> [Double] {
        let out = node.shape!
        if node.op == .input { return input.map(Double.init) }
        let x = values[node.inputs[0]]
        let xs = graph.shape(node.inputs[0])
        var y = [Double](repeating: 0, count: n * out.count)
        switch node.op {
        case .input:
            break
        case .conv:
            let k = node.attrs.kernel!, s = node.attrs.stride!, p = node.attrs.padding!
            let w = param(node.name + ".weight")
            let b = node.attrs.bias == true ? param(node.name + ".bias") : nil
            let window = Window(input: xs, output: out, kernel: k, stride: s, padding: p)
            for i in 0..<n {
                for o in 0..<out.c {
                    let yBase = (i * out.c + o) * out.h * out.w
                    for j in 0..<(out.h * out.w) { y[yBase + j] = b?[o] ?? 0 }
                    for c in 0..<xs.c {
                        let xBase = (i * xs.c + c) * xs.h * xs.w, wBase = (o * xs.c + c) * k * k
                        window.forEachTap { out, input, tap in y[yBase + out] += w[wBase + tap] * x[xBase + input] }
                    }
                }
            }
        case .batchNorm where graph.training:
            // Train mode: normalise with the batch's own statistics (biased variance).
            let gamma = param(node.name + ".weight"), beta = param(node.name + ".bias")
            let plane = out.h * out.w
            for c in 0..<out.c {
                let (mean, variance) = Self.channelStatistics(x, c: c, channels: out.c, plane: plane, n: n)
                let inv = 1 / (variance + 1e-5).squareRoot()
                for i in 0..<n {
                    for j in 0..<plane {
                        let at = (i * out.c + c) * plane + j
                        y[at] = (x[at] - mean) * inv * gamma[c] + beta[c]
                    }
                }
            }
        case .batchNorm:
            let gamma = param(node.name + ".weight"), beta = param(node.name + ".bias")
            let mean = param(node.name + ".running_mean"), variance = param(node.name + ".running_var")
            let plane = out.h * out.w
            for i in 0..<n {
                for c in 0..<out.c {
                    let scale = gamma[c] / (variance[c] + 1e-5).squareRoot()
                    for j in 0..<plane {
                        let at = (i * out.c + c) * plane + j
                        y[at] = (x[at] - mean[c]) * scale + beta[c]
                    }
                }
            }
        case .relu:
            for j in y.indices { y[j] = max(x[j], 0) }
        case .maxPool:
            let k = node.attrs.kernel!, s = node.attrs.stride!, p = node.attrs.padding!
            let window = Window(input: xs, output: out, kernel: k, stride: s, padding: p)
            for j in y.indices { y[j] = -Double.infinity }
            for i in 0..<n {
                for c in 0..<out.c {
                    let yBase = (i * out.c + c) * out.h * out.w, xBase = (i * xs.c + c) * xs.h * xs.w
                    window.forEachTap { out, input, _ in y[yBase + out] = max(y[yBase + out], x[xBase + input]) }
                }
            }
        case .globalAvgPool:
            let plane = xs.h * xs.w
            for i in 0..<n {
                for c in 0..<xs.c {
                    var sum = 0.0
                    for j in 0..<plane { sum += x[(i * xs.c + c) * plane + j] }
                    y[i * xs.c + c] = sum / Double(plane)
                }
            }
        case .dense:
            let w = param(node.name + ".weight"), b = param(node.name + ".bias")
            let inCount = xs.count
            for i in 0..<n {
                for o in 0..<out.c {
                    var acc = b[o]
                    for j in 0..<inCount { acc += w[o * inCount + j] * x[i * inCount + j] }
                    y[i * out.c + o] = acc
                }
            }
        case .softmax:
            let classes = out.count
            for i in 0..<n {
                let row = x[(i * classes)..<((i + 1) * classes)]
                let m = row.max()!
                let e = row.map { exp($0 - m) }
                let total = e.reduce(0, +)
                for (j, v) in e.enumerated() { y[i * classes + j] = v / total }
            }
        case .add:
            let z = values[node.inputs[1]]
            for j in y.indices { y[j] = x[j] + z[j] }
        case .zeroPad:
            let s = node.attrs.stride!
            for i in 0..<n {
                for c in 0..<xs.c {
                    for oy in 0..<out.h {
                        for ox in 0..<out.w {
                            y[((i * out.c + c) * out.h + oy) * out.w + ox] = x[((i * xs.c + c) * xs.h + oy * s) * xs.w + ox * s]
                        }
                    }
                }
            }
        case .fusedConv, .batchNormAct, .secondOutput:
            throw CompileError(layer: node.name, "the interpreter runs the unfused graph (compile without fusion passes)")
        case .loss, .convGradData, .convGradWeight, .batchNormGrad, .reluGrad, .maxPoolGrad, .globalAvgPoolGrad,
             .denseGrad, .zeroPadGrad, .sgdUpdate:
            throw CompileError(layer: node.name, "interpreter: \(node.op.rawValue) needs labels (use trainStep)")
        }
        return y
    }
}

/// The taps of a k×k window with stride and padding over one map: for every
/// output pixel, in order, each kernel position whose input pixel is inside the
/// image (PyTorch's padding never contributes). Indices are within one plane.
struct Window {
    let input: Shape, output: Shape, kernel: Int, stride: Int, padding: Int

    init(input: Shape, output: Shape, kernel: Int, stride: Int, padding: Int) {
        self.input = input
        self.output = output
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    /// body(output index, input index, tap index ky·k + kx).
    func forEachTap(_ body: (Int, Int, Int) -> Void) {
        for oy in 0..<output.h {
            for ox in 0..<output.w {
                for ky in 0..<kernel {
                    let iy = oy * stride - padding + ky
                    if iy < 0 || iy >= input.h { continue }
                    for kx in 0..<kernel {
                        let ix = ox * stride - padding + kx
                        if ix < 0 || ix >= input.w { continue }
                        body(oy * output.w + ox, iy * input.w + ix, ky * kernel + kx)
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
