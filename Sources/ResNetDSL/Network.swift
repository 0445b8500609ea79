#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The input of a network.
public enum Input: Sendable {
    /// `channels`×`height`×`width` images.
    case image(channels: Int, height: Int, width: Int)

    var spec: InputSpec {
        switch self {
        case let .image(channels, height, width): InputSpec(channels: channels, height: height, width: width)
        }
    }
}

/// A named network. Like `Package` in a manifest, every `Network` created in a
/// model file is registered; when the file's program exits the registry is
/// written as JSON for the compiler to read back.
public final class Network: Sendable {
    /// The network as data.
    public let spec: NetworkSpec
    public var name: String { spec.name }

    /// A network of the layers `body` builds. `bottleneck` records where its
    /// downsampling bottleneck blocks put their stride (the zoo sets it; the
    /// compiler checks it against the layers).
    public init(_ name: String, input: Input, bottleneck: BottleneckVariant? = nil, @LayerBuilder _ body: () -> [LayerSpec]) {
        spec = NetworkSpec(name: name, input: input.spec, layers: body(), bottleneck: bottleneck?.rawValue)
        Registry.shared.add(spec)
    }

    /// Wraps an existing spec (for example one read from JSON) without registering it.
    public init(spec: NetworkSpec) {
        self.spec = spec
    }
}

/// Networks registered by the running program, and the hook that writes them out.
public final class Registry: @unchecked Sendable {
    /// The one registry of this process.
    public static let shared = Registry()

    /// The environment variable naming the file the registry is written to at exit.
    /// The compiler sets it when it runs a model file; otherwise nothing is written.
    public static let outputEnvironmentKey = "RESNET_COMPILE_MODEL_OUTPUT"

    private let lock = NSLock()
    private var specs: [NetworkSpec] = []
    private var hookInstalled = false

    /// Every network registered so far, in creation order.
    public var networks: [NetworkSpec] { lock.withLock { specs } }

    func add(_ spec: NetworkSpec) {
        lock.withLock {
            specs.append(spec)
            if !hookInstalled, ProcessInfo.processInfo.environment[Self.outputEnvironmentKey] != nil {
                hookInstalled = true
                atexit { Registry.shared.writeOut() }
            }
        }
    }

    /// Writes the registry as a `ModelFile` to the path in the environment.
    func writeOut() {
        guard let path = ProcessInfo.processInfo.environment[Self.outputEnvironmentKey] else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            let data = try encoder.encode(ModelFile(networks: networks))
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            FileHandle.standardError.write(Data("ResNetDSL: cannot write \(path): \(error)\n".utf8))
        }
    }
}
