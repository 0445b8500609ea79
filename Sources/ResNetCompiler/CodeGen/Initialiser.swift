/// How `NAME_init_params` fills a parameter: torchvision's initialisation —
/// conv weights kaiming-normal (fan_out, ReLU gain), Linear weights and conv
/// and Linear biases uniform ±1/√fan_in, BN γ = 1, β = 0, μ = 0, σ² = 1.
///
/// The C draws every random value from one stream seeded by the caller
/// (runtime.c's `rc_rng`), tensor by tensor in state-dict order, with
/// exactly rounded arithmetic only, so a seed gives the same bits with every
/// compiler (ResNetTestSupport's `ReferenceInit` redoes it in Swift).
public enum Initialiser: Equatable, Sendable {
    /// N(0, std²).
    case normal(std: Double)
    /// U(−bound, bound).
    case uniform(bound: Double)
    /// Every element the same value.
    case constant(Double)

    public init(_ p: Parameter) {
        switch p.kind {
        case .runningMean: self = .constant(0)
        case .runningVar: self = .constant(1)
        case .weight where p.shape.count == 1: self = .constant(1)
        case .bias where p.fanIn == nil: self = .constant(0)
        case .weight where p.shape.count == 4:
            let fanOut = p.shape[0] * p.shape[2] * p.shape[3]
            self = .normal(std: (2.0 / Double(fanOut)).squareRoot())
        case .weight: self = .uniform(bound: 1.0 / Double(p.shape[1]).squareRoot())
        case .bias: self = .uniform(bound: 1.0 / Double(max(1, p.fanIn!)).squareRoot())
        }
    }

    /// The init kind of model.c.mustache's PARAMS table (INIT_NORMAL = 0,
    /// INIT_UNIFORM = 1, INIT_CONST = 2) and its scale: the std, the bound
    /// or the constant.
    var table: (kind: Int, scale: Double) {
        switch self {
        case let .normal(std): (0, std)
        case let .uniform(bound): (1, bound)
        case let .constant(value): (2, value)
        }
    }
}
