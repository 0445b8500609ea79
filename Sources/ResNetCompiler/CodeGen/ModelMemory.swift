/// What a whole generated model occupies, in bytes: the layout `NAME_create_in`
/// carves out of the caller's block and the figures of the header's
/// `UNAME_ARENA_BYTES_*` and `UNAME_MODEL_BYTES_*` macros.
///
/// The block holds, in this order and each part starting on a 64-byte line:
/// the model struct (a fixed allowance the C checks with `_Static_assert`),
/// the state dict, then
/// - for inference: the weights region (the folded inference weights and
///   their packed vector copies) and the activation arena for `max_batch`
///   images;
/// - for a model that trains: the training step's pack buffer (each vector
///   conv's weights are packed there from the parameters right before its
///   kernel, so it holds the largest one), the arena, and the parameter
///   gradients, the momentum buffers and the batch statistics. The arena is
///   the larger of the training step's (followed by the weight-gradient
///   partials) and the inference graph's followed by the weights region:
///   inference keeps its weights in the arena after its own activations,
///   since a step overwrites both anyway, and they are rebuilt from the
///   parameters before the next inference.
///
/// Everything but the arena is independent of the batch. A step with
/// replicas needs `dataParallelBytes` more (create_in: after
/// MODEL_BYTES_TRAIN; create: allocated by set_allreduce).
public struct ModelMemory: Hashable, Sendable {
    /// The block's alignment (`UNAME_MODEL_ALIGN`): a cache line, an AVX-512 vector.
    public static let alignment = 64

    /// The allowance for the C struct: its scalar fields and pointers take
    /// under 160 bytes on LP64 and ILP32 alike, plus the 256-byte message of
    /// `NAME_last_error` and one int64 counter per batch norm.
    public var structBytes: Int
    public var paramBytes: Int
    public var foldedBytes: Int
    public var packedBytes: Int
    /// Inference arena per image.
    public var arenaBytesPerImage: Int
    /// The training step's pack buffer: the largest single pack.
    public var trainPackedBytes: Int
    /// Gradients and momentum: one float per state-dict float each.
    public var gradBytes: Int
    public var momentumBytes: Int
    public var statsBytes: Int
    /// A training model's arena per image: the larger of the two graphs'.
    public var trainArenaBytesPerImage: Int
    /// One weight-gradient partial; a training arena ends with
    /// `MemoryPlan.partials(maxBatch:)` of them (they do not scale with the batch).
    public var partialBytes: Int
    /// A step with replicas keeps what each gradient's rounding lost (one
    /// float slot per state-dict float) and sums them exactly through a
    /// buffer of up to 5 · 65,536 floats (runtime.c, `rc_allreduce_grads`):
    /// a region of its own, only in models that train with replicas.
    public var dataParallelFloats: Int
    public var dataParallelBytes: Int

    /// Bytes rounded up to the block's alignment.
    static func line(_ bytes: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }

    init(graph: Graph, training: Graph?, layout: ParameterLayout) {
        structBytes = Self.line(192 + 256 + 8 * max(1, graph.batchNormNames.count))
        paramBytes = Self.line(4 * graph.parameterCount)
        foldedBytes = Self.line(4 * layout.foldedFloats)
        packedBytes = Self.line(4 * layout.packedFloats)
        let arena = graph.memory?.arenaFloats ?? 0
        arenaBytesPerImage = 4 * arena
        trainPackedBytes = Self.line(4 * layout.trainPackedFloats)
        gradBytes = paramBytes
        momentumBytes = paramBytes
        statsBytes = Self.line(4 * max(1, layout.statsFloats))
        trainArenaBytesPerImage = 4 * max(arena, training?.memory?.arenaFloats ?? 0)
        partialBytes = 4 * (training?.memory?.partialFloats ?? 0)
        dataParallelFloats = Self.dataParallelFloats(parameters: graph.parameterCount)
        dataParallelBytes = Self.line(4 * dataParallelFloats)
    }

    /// What the rounding of `parameters` gradients lost, then the exact sums' buffer.
    static func dataParallelFloats(parameters: Int) -> Int { parameters + 5 * min(parameters, 1 << 16) }

    /// The figures for a network's inference graph and training graph.
    public init(graph: Graph, training: Graph?) {
        var layout = ParameterLayout(graph)
        if let training { layout.addTrainingPacks(training) }
        self.init(graph: graph, training: training, layout: layout)
    }

    /// Everything but the arena, for an inference-only model.
    public var fixedInferBytes: Int { structBytes + paramBytes + inferWeightBytes }
    /// The inference weights region: folded weights, then packed ones.
    public var inferWeightBytes: Int { foldedBytes + packedBytes }
    /// Everything but the arena, for a model that also trains.
    public var fixedTrainBytes: Int {
        structBytes + paramBytes + trainPackedBytes + gradBytes + momentumBytes + statsBytes
    }

    /// `UNAME_ARENA_BYTES_INFER(batch)` / `UNAME_ARENA_BYTES_TRAIN(batch)`.
    public func arenaBytes(batch: Int, training: Bool) -> Int {
        training ? batch * trainArenaBytesPerImage + partialBytes * MemoryPlan.partials(maxBatch: batch)
                 : batch * arenaBytesPerImage
    }

    /// A training model's arena with its inference weights: the training
    /// step's arena, or the inference activations followed by the weights
    /// region, whichever is larger.
    public func trainRegionBytes(batch: Int) -> Int {
        max(arenaBytes(batch: batch, training: true), Self.line(arenaBytes(batch: batch, training: false)) + inferWeightBytes)
    }

    /// `UNAME_MODEL_BYTES_INFER(batch)` / `UNAME_MODEL_BYTES_TRAIN(batch)`.
    public func modelBytes(batch: Int, training: Bool) -> Int {
        training ? fixedTrainBytes + trainRegionBytes(batch: batch) : fixedInferBytes + arenaBytes(batch: batch, training: false)
    }
}
