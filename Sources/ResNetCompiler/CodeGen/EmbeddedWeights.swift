import Foundation

/// `--embed-weights FILE.safetensors`: the weights as C, for programs on
/// systems without a file system.
///
/// The file is checked against the network here, at compile time, with the
/// messages `NAME_load` gives (a tensor the model lacks, one it needs that is
/// missing, a wrong dtype or shape, a value that is not finite), and
/// re-encoded in state-dict order, which is what `NAME_save` writes: the C
/// that loads it then sees a canonical file whatever wrote the original.
/// `NAME_weights.c` holds those bytes and `NAME_init_embedded`, which passes
/// them to `NAME_load_buffer` (the same checks again, from memory).
///
/// The bytes are written as rows of string literals, not as a list of
/// numbers: measured on 10 MB with gcc 12 at -O2, `0x12,` per byte took 161 s
/// and 1.4 GB, decimal bytes 39 s, 64-bit words 4.2 s (and bytes that depend
/// on the host's byte order), string rows 1.1 s and 170 MB. Each row stays
/// under the 4095 characters C compilers must accept in a literal, which
/// `-Wpedantic` enforces.
public struct EmbeddedWeights {
    /// Bytes per row: a line of at most 4 × 256 + 4 characters.
    public static let rowBytes = 256

    /// The safetensors bytes to embed: the state dict in its order.
    public var bytes: Data
    /// Tensors in `bytes`.
    public var tensorCount: Int
    /// The file they came from, for messages and the header comment.
    public var source: String

    /// The safetensors file `data` (named `source` in messages), checked
    /// against `graph`'s state dict and re-encoded in its order.
    public init(_ data: Data, source: String, graph: Graph) throws {
        let tensors = try SafeTensors.decode(data, source: source)
        // What NAME_load accepts: every parameter as F32, and each batch
        // norm's num_batches_tracked as an I64 scalar if it is there.
        var expected: [(name: String, dtype: String, shape: [Int], optional: Bool)] =
            graph.parameters.map { ($0.name, "F32", $0.shape, false) }
        expected += graph.batchNormNames.map { ($0 + ".num_batches_tracked", "I64", [], true) }
        let known = Set(expected.map(\.name))
        if let stranger = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw CompileError("\(source): \(stranger): not in the model")
        }
        var ordered: [(String, SafeTensors.Tensor)] = []
        for e in expected {
            guard let t = tensors[e.name] else {
                if e.optional { continue }
                throw CompileError("\(source): \(e.name): missing from the file")
            }
            if t.dtype != e.dtype { throw CompileError("\(source): \(e.name): dtype \(e.dtype) expected, file has \(t.dtype)") }
            if t.shape != e.shape {
                let text = { (s: [Int]) in "[" + s.map(String.init).joined(separator: ",") + "]" }
                throw CompileError("\(source): \(e.name): shape \(text(e.shape)) expected, file has \(text(t.shape))")
            }
            if e.dtype == "F32", let bad = t.floats.firstIndex(where: { !$0.isFinite }) {
                throw CompileError("\(source): \(e.name): element \(bad) is not finite (NaN or Inf)")
            }
            ordered.append((e.name, t))
        }
        bytes = SafeTensors.encode(ordered)
        tensorCount = ordered.count
        self.source = source
    }

    /// Writes `NAME_weights.c` (network `name`) to `handle` in pieces, so
    /// that a large file is never one string in memory. The header comment
    /// names the original file by its base name only (generated files hold
    /// no paths).
    public func write(name: String, templates: Templates, to handle: FileHandle) throws {
        let rowBytes = Self.rowBytes
        let marker = "RC_EMBEDDED_ROWS"
        let text = try templates.render("weights.c", [
            "name": name, "version": CEmitter.version, "source": URL(fileURLWithPath: source).lastPathComponent,
            "bytes": bytes.count, "tensors": tensorCount, "row": rowBytes,
            "rowCount": (bytes.count + rowBytes - 1) / rowBytes, "rows": marker,
        ] as [String: Any])
        guard let cut = text.range(of: marker) else { throw CompileError("weights.c.mustache does not place {{{rows}}}") }
        try handle.write(contentsOf: Data(text[..<cut.lowerBound].utf8))
        // A byte loop over raw buffers: 100 MB of weights are 100 million
        // iterations, and this is the compiler's only loop of that size.
        let (table, lengths) = (Self.escapes, Self.escapeLengths)
        let flush = 1 << 20
        let out = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: flush + 4 * rowBytes + 4)
        defer { out.deallocate() }
        var used = 0
        try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            for start in stride(from: 0, to: raw.count, by: rowBytes) {
                out[used] = UInt8(ascii: "\"")
                used += 1
                for i in start..<min(start + rowBytes, raw.count) {
                    let b = Int(raw[i])
                    for k in 0..<Int(lengths[b]) { out[used + k] = table[4 * b + k] }
                    used += Int(lengths[b])
                }
                for c in "\",\n".utf8 {
                    out[used] = c
                    used += 1
                }
                if used >= flush || start + rowBytes >= raw.count {
                    try handle.write(contentsOf: UnsafeBufferPointer(rebasing: out[..<used]))
                    used = 0
                }
            }
        }
        try handle.write(contentsOf: Data(text[cut.upperBound...].utf8).dropFirst())  // the rows ended their line
    }

    /// Each byte as it stands in a C string literal, in 4 bytes per byte
    /// (`escapeLengths` of them used): printable ASCII as itself, the rest
    /// as a three-digit octal escape (which never runs into the next
    /// character, as \x does). `"` and `\` need escapes, and `?` too, since
    /// `??` begins a trigraph in ISO C.
    static let escapes: [UInt8] = (0..<256).flatMap { b -> [UInt8] in
        let octal = String(b, radix: 8)
        let text = printable(b) ? String(UnicodeScalar(UInt8(b))) : "\\" + String(repeating: "0", count: 3 - octal.count) + octal
        return Array(text.utf8) + Array(repeating: 0, count: 4 - text.utf8.count)
    }
    static let escapeLengths: [UInt8] = (0..<256).map { printable($0) ? 1 : 4 }

    static func printable(_ b: Int) -> Bool { b >= 0x20 && b < 0x7F && b != 0x22 && b != 0x5C && b != 0x3F }
}
