/// An error in the user's network, named by layer and reason, or a failure of
/// the tool around it. `description` is what the CLI prints.
public struct CompileError: Error, CustomStringConvertible, Equatable {
    /// The layer at fault, when there is one.
    public var layer: String?
    public var reason: String

    public init(layer: String? = nil, _ reason: String) {
        self.layer = layer
        self.reason = reason
    }

    public var description: String {
        if let layer { return "layer '\(layer)': \(reason)" }
        return reason
    }
}
