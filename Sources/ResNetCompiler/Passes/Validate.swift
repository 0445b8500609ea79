/// Validate: structural checks before anything reads shapes.
///
/// Requires a lowered graph. Checks that the network name is a C identifier
/// (it prefixes every generated symbol) that no generated name collides with,
/// that inputs point backwards, that
/// every size is positive, and that no two layers share a name (their
/// parameters would collide). Errors name the layer and the reason.
public struct Validate: Pass {
    public var name: String { "Validate" }
    public init() {}

    public func run(_ graph: Graph) throws -> Graph {
        try Self.checkNetworkName(graph.name)
        var seen: [String: Int] = [:]
        for node in graph.nodes {
            for i in node.inputs where i < 0 || i >= node.id {
                throw CompileError(layer: node.name, "input #\(i) is not an earlier node")
            }
            if node.op != .input && node.inputs.isEmpty {
                throw CompileError(layer: node.name, "has no input")
            }
            if let previous = seen[node.name] {
                throw CompileError(layer: node.name, "duplicate layer name (also node #\(previous)); parameter names such as '\(node.name).weight' would collide")
            }
            seen[node.name] = node.id
            let a = node.attrs
            for (value, what) in [(a.outChannels, "output channels"), (a.outFeatures, "output features"),
                                  (a.kernel, "kernel size"), (a.stride, "stride")] {
                if let value, value <= 0 { throw CompileError(layer: node.name, "\(what) must be positive, got \(value)") }
            }
            if let p = a.padding, p < 0 { throw CompileError(layer: node.name, "padding must not be negative, got \(p)") }
            // p > k / 2 is 2p > k without the overflow of 2p.
            if node.op == .maxPool, let p = a.padding, let k = a.kernel, p > k / 2 {
                throw CompileError(layer: node.name, "padding \(p) is more than half the kernel \(k) (PyTorch rejects this)")
            }
        }
        if let s = graph.input.shape, s.c <= 0 || s.h <= 0 || s.w <= 0 {
            throw CompileError("network '\(graph.name)': input size must be positive, got \(s)")
        }
        return graph
    }

    /// Network names become C identifiers (`NAME_infer`, `UNAME_INPUT_C`, the
    /// header guard `UNAME_H`, `module NAME`), lower case.
    public static func checkNetworkName(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
            && !("0"..."9").contains(name.unicodeScalars.first!)
        if !ok {
            throw CompileError("network name '\(name)' must be a lower-case C identifier ([a-z_][a-z0-9_]*, at most 64 characters)")
        }
        if let why = reservedReason(name) {
            throw CompileError("network name '\(name)' cannot be used: \(why); rename the network")
        }
    }

    /// Why `name` (already a lower-case identifier) would make the generated C
    /// wrong, or nil when it is fine.
    static func reservedReason(_ name: String) -> String? {
        if cKeywords.contains(name) { return "it is a C keyword" }
        if name.hasPrefix("_") { return "identifiers beginning with '_' (here \(name)_model, \(name.uppercased())_H) are reserved in C" }
        if name.contains("__") { return "identifiers containing '__' are reserved (C++, and Swift importing the module)" }
        if name == "rc" || name.hasPrefix("rc_") { return "'rc_' and 'RC_' prefix the generated runtime's own helpers (rc_strerror, rc_st_load, RC_OK)" }
        if name.hasSuffix("_input") {
            let other = String(name.dropLast("_input".count))
            return "its header guard \(name.uppercased())_H is the input-height macro of a network '\(other)', so the two headers could not be used together"
        }
        if name.hasSuffix("_last") {
            let other = String(name.dropLast("_last".count))
            return "its error enum \(name)_error is the \(other)_last_error function of a network '\(other)', so the two headers could not be used together"
        }
        if let clash = collisions[name] { return "\(clash) is already a name in the generated C, the trainer or the C library it includes" }
        return nil
    }

    /// C11 and C23 keywords (C23 adds bool, true, false, nullptr, …).
    static let cKeywords: Set<String> = [
        "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum",
        "extern", "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return",
        "short", "signed", "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void",
        "volatile", "while", "alignas", "alignof", "bool", "constexpr", "false", "nullptr", "static_assert",
        "thread_local", "true", "typeof", "typeof_unqual",
    ]

    /// Names N for which an API name (N_load, N_create, N_H, N_INPUT_H, …) is
    /// already declared by the runtime's C, the trainer or a libc header they
    /// include (POSIX timer_create in <time.h>). `ValidationTests` recomputes
    /// this from the C sources and headers, so a new clash fails a test.
    static let collisions: [String: String] = [
        "g": "G_H", "in": "IN_H", "input": "INPUT_H", "sc": "SC_H",
        "safetensors": "safetensors_load", "timer": "timer_create",
        // The trainer's options (cfg.train_error_images, cfg.warmup_error, …) against `enum NAME_error`.
        "test": "test_error", "train": "train_error", "val": "val_error", "warmup": "warmup_error",
    ]
}
