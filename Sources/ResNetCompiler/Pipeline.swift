import ResNetDSL

/// The pass pipeline, spelled out in one place with why each step is there.
public struct Pipeline: Sendable {
    public var passes: [any Pass]

    /// Options that change which passes run.
    public struct Options: Sendable {
        /// Fold BN and fuse epilogues (off: one kernel per op, for checking fusion).
        public var fuse = true
        /// Schedules measured by `--tune`, by conv key (Schedule.tuneKey); empty: the cost model's.
        public var choices: [String: TuneCache.Choice] = [:]
        /// Training: rebuild batch-norm outputs in the backward pass instead of
        /// keeping them (Recompute; needs fusion). Off: keep every one.
        public var recompute = true
        /// Training, with `recompute`: also rebuild convs of at most 144
        /// multiply-adds per output value that read a rebuildable output
        /// (CIFAR's first-stage conv1s; Recompute.narrowConvCost): less memory
        /// for a step 4–9% slower (on by default; see Recompute).
        public var recomputeNarrowConvs = true
        /// Build the training step too (off, `--no-train`: the training tail
        /// does not run and the C is inference only).
        public var training = true
        public init(fuse: Bool = true, choices: [String: TuneCache.Choice] = [:], recompute: Bool = true,
                    recomputeNarrowConvs: Bool = true, training: Bool = true) {
            self.fuse = fuse
            self.choices = choices
            self.recompute = recompute
            self.recomputeNarrowConvs = recomputeNarrowConvs
            self.training = training
        }
    }

    /// The front both pipelines share: a checked graph with every shape known
    /// (unfused; what the interpreter runs and the summary counts).
    public static let analysis = Pipeline(passes: [
        Validate(),        // names and sizes are sane before anything reads them
        InferShapes(),     // every shape known; shortcuts resolved; parameters listed
    ])

    /// Inference after the front.
    public static func inferenceTail(_ options: Options = Options()) -> Pipeline {
        var passes: [any Pass] = []
        if options.fuse {
            passes.append(FoldBatchNorm())   // eval-mode BN is affine: fold it into the conv
            passes.append(FuseEpilogues())   // shortcut add and ReLU ride in the conv's epilogue
        }
        passes.append(Schedule(choices: options.choices)) // layout, algorithm and register tiles per kernel
        passes.append(PlanMemory())          // one arena, buffers shared by liveness
        return Pipeline(passes: passes)
    }

    /// The training step after the front: the backward graph, its fusion and its memory plan.
    public static func trainingTail(_ options: Options = Options()) -> Pipeline {
        var passes: [any Pass] = [
            Differentiate(),   // backward graph and the SGD step, in the IR
        ]
        if options.fuse {
            passes.append(FuseTraining())    // BN+add+ReLU one kernel; its backward fused to match
            if options.recompute {
                passes.append(Recompute(narrowConvs: options.recomputeNarrowConvs))   // BN outputs (and cheap convs) rebuilt for the backward pass, not kept
            }
        }
        passes.append(Schedule(choices: options.choices))
        passes.append(PlanMemory())          // activations live until their gradient is computed
        return Pipeline(passes: passes)
    }

    /// Inference, whole: the order data flows through the compiler.
    public static func inference(_ options: Options = Options()) -> Pipeline {
        Pipeline(passes: analysis.passes + inferenceTail(options).passes)
    }

    /// Training, whole.
    public static func training(_ options: Options = Options()) -> Pipeline {
        Pipeline(passes: analysis.passes + trainingTail(options).passes)
    }

    /// The unfused training graph the interpreter runs.
    public static func analyseTraining(_ spec: NetworkSpec) throws -> Graph {
        try analyseTraining(lowered: try Lower.lower(spec))
    }

    /// The same for a graph already in the IR (an imported ONNX model).
    public static func analyseTraining(lowered: Graph) throws -> Graph {
        try Pipeline(passes: analysis.passes + [Differentiate()]).run(lowered)
    }

    /// Pass names, in order, for `--dump-after`.
    public var names: [String] { passes.map(\.name) }

    /// Runs every pass, verifying the IR after each; `observe` sees the graph
    /// after each one (for `--dump-after`).
    public func run(_ graph: Graph, observe: (String, Graph) -> Void = { _, _ in }) throws -> Graph {
        var g = graph
        for pass in passes {
            g = try pass.run(g)
            try Verify.check(g, after: pass.name)   // the IR's invariants hold after every pass
            observe(pass.name, g)
        }
        return g
    }

    /// Lowers and analyses a network spec: the unfused graph the interpreter runs.
    public static func analyse(_ spec: NetworkSpec) throws -> Graph {
        try analysis.run(try Lower.lower(spec))
    }
}
