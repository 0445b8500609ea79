import ResNetDSL

/// The networks the compiler knows without a model file.
public enum BuiltIn {
    /// The paper's CIFAR-10 ResNet-20, option A: what `resnet-compile` compiles with no FILE.
    public static func resnet20() throws -> NetworkSpec {
        try ResNet.cifar(depth: 20).spec
    }
}
