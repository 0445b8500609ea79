import Foundation
import ResNetCompiler

extension SafeTensors {
    /// Writes `tensors`, changed by `edit`, to `path` (names in sorted order)
    /// and returns the path: how tests make a bad weight file from a good one.
    @discardableResult
    public static func writeVariant(of tensors: [String: Tensor], to path: String,
                                    _ edit: (inout [String: Tensor]) -> Void = { _ in }) throws -> String {
        var t = tensors
        edit(&t)
        try write(t.keys.sorted().map { ($0, t[$0]!) }, to: path)
        return path
    }
}
