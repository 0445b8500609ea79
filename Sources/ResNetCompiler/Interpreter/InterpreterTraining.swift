/// The reference interpreter's training half: the loss, every gradient op of
/// Differentiate, and SGD, in float64 with naive loops. Gradients are checked
/// against finite differences of this same interpreter's forward pass, and the
/// generated C's training step against these gradients and against PyTorch.
extension Interpreter {
    /// What one training step computes before the optimiser runs.
    public struct TrainResult {
        /// Mean softmax cross-entropy over the batch.
        public var loss: Double
        /// ∂loss/∂parameter for every trainable parameter, by name.
        public var gradients: [String: [Double]]
        /// Per batch norm: the batch mean and the unbiased batch variance (for the running estimates).
        public var batchStatistics: [String: (mean: [Double], variance: [Double])]
        /// Every node's value (gradients included), for comparing intermediate results.
        public var values: [[Double]]
    }

    struct TrainState {
        var labels: [Int]
        var loss = 0.0
        var gradients: [String: [Double]] = [:]
        var statistics: [String: (mean: [Double], variance: [Double])] = [:]
    }

    /// Forward (train mode), loss and backward on a training graph (after Differentiate).
    public func trainStep(_ input: [Float], labels: [Int], batch n: Int) throws -> TrainResult {
        guard graph.training else { throw CompileError("interpreter: trainStep needs a training graph (run Differentiate)") }
        guard labels.count == n, labels.allSatisfy({ $0 >= 0 && $0 < graph.classes }) else {
            throw CompileError("interpreter: \\(labels.count) labels for \\(n) samples, each in 0..<\\(graph.classes)")
        }
        var state = TrainState(labels: labels)
        let values = try run(input, batch: n, state: &state)
        return TrainResult(loss: state.loss, gradients: state.gradients, batchStatistics: state.statistics, values: values)
    }

    /// PyTorch's SGD (dampening 0, no Nesterov, weight decay on every parameter)
    /// and BN's running-statistics update (momentum 0.1). Returns the new
    /// parameters and momentum buffers.
    public func sgdStep(parameters: [String: [Double]], momentumBuffers: [String: [Double]], result: TrainResult,
                        lr: Double, momentum: Double, weightDecay: Double)
        -> (parameters: [String: [Double]], momentumBuffers: [String: [Double]]) {
        var p = parameters, buffers = momentumBuffers
        for info in graph.parameters {
            switch info.kind {
            case .weight, .bias:
                let grad = result.gradients[info.name]!
                var w = p[info.name]!
                var b = buffers[info.name] ?? Array(repeating: 0, count: w.count)
                for j in w.indices {
                    let d = grad[j] + weightDecay * w[j]
                    b[j] = momentum * b[j] + d
                    w[j] -= lr * b[j]
                }
                p[info.name] = w
                buffers[info.name] = b
            case .runningMean:
                let stats = result.batchStatistics[info.layer]!
                p[info.name] = zip(p[info.name]!, stats.mean).map { 0.9 * $0 + 0.1 * $1 }
            case .runningVar:
                let stats = result.batchStatistics[info.layer]!
                p[info.name] = zip(p[info.name]!, stats.variance).map { 0.9 * $0 + 0.1 * $1 }
            }
        }
        return (p, buffers)
    }

    /// Mean and biased variance of channel `c` over the batch and the map.
    static func channelStatistics(_ x: [Double], c: Int, channels: Int, plane: Int, n: Int) -> (Double, Double) {
        var sum = 0.0
        for i in 0..<n { for j in 0..<plane { sum += x[(i * channels + c) * plane + j] } }
        let m = Double(n * plane)
        let mean = sum / m
        var sq = 0.0
        for i in 0..<n { for j in 0..<plane { let d = x[(i * channels + c) * plane + j] - mean; sq += d * d } }
        return (mean, sq / m)
    }

    /// Training-only ops; nil for ops `evaluate` handles.
    func evaluateTraining(_ node: Node, _ values: [[Double]], _ n: Int, _ state: inout TrainState) throws -> [Double]? {
        switch node.op {
        case .loss:
            let logits = values[node.inputs[0]]
            let k = node.shape!.count
            var grad = [Double](repeating: 0, count: n * k)
            var total = 0.0
            for i in 0..<n {
                let row = logits[(i * k)..<((i + 1) * k)]
                let m = row.max()!
                let e = row.map { exp($0 - m) }
                let z = e.reduce(0, +)
                total += -(row[row.startIndex + state.labels[i]] - m - log(z))
                for j in 0..<k {
                    grad[i * k + j] = (e[j] / z - (j == state.labels[i] ? 1 : 0)) / Double(n)
                }
            }
            state.loss = total / Double(n)
            return grad
        case .batchNorm where graph.training:
            // Record the batch statistics for the running estimates, then let evaluate normalise.
            let x = values[node.inputs[0]], s = node.shape!
            var means: [Double] = [], variances: [Double] = []
            for c in 0..<s.c {
                let (mean, variance) = Self.channelStatistics(x, c: c, channels: s.c, plane: s.h * s.w, n: n)
                let m = Double(n * s.h * s.w)
                means.append(mean)
                variances.append(m > 1 ? variance * m / (m - 1) : variance)
            }
            state.statistics[node.name] = (means, variances)
            return nil
        case .convGradData:
            let f = graph.nodes[node.attrs.forward!]
            let dy = values[node.inputs[0]], ys = f.shape!, xs = node.shape!
            let k = f.attrs.kernel!, s = f.attrs.stride!, p = f.attrs.padding!
            let w = param(f.name + ".weight")
            let window = Window(input: xs, output: ys, kernel: k, stride: s, padding: p)
            var dx = [Double](repeating: 0, count: n * xs.count)
            for i in 0..<n {
                for o in 0..<ys.c {
                    let yBase = (i * ys.c + o) * ys.h * ys.w
                    for c in 0..<xs.c {
                        let xBase = (i * xs.c + c) * xs.h * xs.w, wBase = (o * xs.c + c) * k * k
                        window.forEachTap { out, input, tap in dx[xBase + input] += dy[yBase + out] * w[wBase + tap] }
                    }
                }
            }
            return dx
        case .convGradWeight:
            let f = graph.nodes[node.attrs.forward!]
            let dy = values[node.inputs[0]], x = values[node.inputs[1]]
            let ys = f.shape!, xs = graph.shape(f.inputs[0])
            let k = f.attrs.kernel!, s = f.attrs.stride!, p = f.attrs.padding!
            let window = Window(input: xs, output: ys, kernel: k, stride: s, padding: p)
            var dw = [Double](repeating: 0, count: ys.c * xs.c * k * k)
            var db = [Double](repeating: 0, count: ys.c)
            for i in 0..<n {
                for o in 0..<ys.c {
                    let yBase = (i * ys.c + o) * ys.h * ys.w
                    for j in 0..<(ys.h * ys.w) { db[o] += dy[yBase + j] }
                    for c in 0..<xs.c {
                        let xBase = (i * xs.c + c) * xs.h * xs.w, wBase = (o * xs.c + c) * k * k
                        window.forEachTap { out, input, tap in dw[wBase + tap] += dy[yBase + out] * x[xBase + input] }
                    }
                }
            }
            state.gradients[f.name + ".weight"] = dw
            if f.attrs.bias == true { state.gradients[f.name + ".bias"] = db }
            return []
        case .batchNormGrad:
            let f = graph.nodes[node.attrs.forward!]
            let dy = values[node.inputs[0]], z = values[node.inputs[1]], s = node.shape!
            let gamma = param(f.name + ".weight")
            let plane = s.h * s.w, m = Double(n * plane)
            var dz = [Double](repeating: 0, count: n * s.count)
            var dgamma = [Double](repeating: 0, count: s.c), dbeta = [Double](repeating: 0, count: s.c)
            for c in 0..<s.c {
                let (mean, variance) = Self.channelStatistics(z, c: c, channels: s.c, plane: plane, n: n)
                let inv = 1 / (variance + 1e-5).squareRoot()
                var sumDy = 0.0, sumDyXhat = 0.0
                for i in 0..<n {
                    for j in 0..<plane {
                        let at = (i * s.c + c) * plane + j
                        sumDy += dy[at]
                        sumDyXhat += dy[at] * (z[at] - mean) * inv
                    }
                }
                dgamma[c] = sumDyXhat
                dbeta[c] = sumDy
                for i in 0..<n {
                    for j in 0..<plane {
                        let at = (i * s.c + c) * plane + j
                        let xhat = (z[at] - mean) * inv
                        dz[at] = gamma[c] * inv / m * (m * dy[at] - sumDy - xhat * sumDyXhat)
                    }
                }
            }
            state.gradients[f.name + ".weight"] = dgamma
            state.gradients[f.name + ".bias"] = dbeta
            return dz
        case .reluGrad:
            let dy = values[node.inputs[0]], y = values[node.inputs[1]]
            return zip(dy, y).map { $1 > 0 ? $0 : 0 }
        case .maxPoolGrad:
            let f = graph.nodes[node.attrs.forward!]
            let dy = values[node.inputs[0]], x = values[node.inputs[1]]
            let ys = f.shape!, xs = node.shape!
            let k = f.attrs.kernel!, s = f.attrs.stride!, p = f.attrs.padding!
            // The first maximum of each window (PyTorch's tie rule) receives the gradient.
            let window = Window(input: xs, output: ys, kernel: k, stride: s, padding: p)
            var dx = [Double](repeating: 0, count: n * xs.count)
            for i in 0..<n {
                for c in 0..<xs.c {
                    let yBase = (i * ys.c + c) * ys.h * ys.w, xBase = (i * xs.c + c) * xs.h * xs.w
                    var best = [Double](repeating: -.infinity, count: ys.h * ys.w)
                    var at = [Int](repeating: -1, count: ys.h * ys.w)
                    window.forEachTap { out, input, _ in
                        if x[xBase + input] > best[out] { best[out] = x[xBase + input]; at[out] = input }
                    }
                    for (out, input) in at.enumerated() where input >= 0 { dx[xBase + input] += dy[yBase + out] }
                }
            }
            return dx
        case .globalAvgPoolGrad:
            let dy = values[node.inputs[0]], xs = node.shape!
            let plane = xs.h * xs.w
            var dx = [Double](repeating: 0, count: n * xs.count)
            for i in 0..<n { for c in 0..<xs.c { for j in 0..<plane { dx[(i * xs.c + c) * plane + j] = dy[i * xs.c + c] / Double(plane) } } }
            return dx
        case .denseGrad:
            let f = graph.nodes[node.attrs.forward!]
            let dy = values[node.inputs[0]], x = values[node.inputs[1]]
            let o = f.shape!.c, inCount = node.shape!.count
            let w = param(f.name + ".weight")
            var dx = [Double](repeating: 0, count: n * inCount)
            var dw = [Double](repeating: 0, count: o * inCount), db = [Double](repeating: 0, count: o)
            for i in 0..<n {
                for r in 0..<o {
                    let g = dy[i * o + r]
                    db[r] += g
                    for j in 0..<inCount {
                        dx[i * inCount + j] += g * w[r * inCount + j]
                        dw[r * inCount + j] += g * x[i * inCount + j]
                    }
                }
            }
            state.gradients[f.name + ".weight"] = dw
            state.gradients[f.name + ".bias"] = db
            return dx
        case .zeroPadGrad:
            let f = graph.nodes[node.attrs.forward!]
            let dy = values[node.inputs[0]], ys = f.shape!, xs = node.shape!
            let s = f.attrs.stride!
            var dx = [Double](repeating: 0, count: n * xs.count)
            for i in 0..<n {
                for c in 0..<xs.c {
                    for oy in 0..<ys.h {
                        for ox in 0..<ys.w {
                            dx[((i * xs.c + c) * xs.h + oy * s) * xs.w + ox * s] = dy[((i * ys.c + c) * ys.h + oy) * ys.w + ox]
                        }
                    }
                }
            }
            return dx
        case .sgdUpdate:
            return []
        default:
            return nil
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
