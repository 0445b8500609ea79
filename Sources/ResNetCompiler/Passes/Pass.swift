/// A compiler pass: one value, one job, graph in, graph out.
public protocol Pass: Sendable {
    /// The name `--dump-after` takes.
    var name: String { get }
    func run(_ graph: Graph) throws -> Graph
}
