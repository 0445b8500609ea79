import Foundation

/// Reads and writes safetensors files (8-byte little-endian header length,
/// JSON header, raw little-endian data) for the Swift side: tests, fixtures
/// and datasets. The generated C and the trainer share one C loader (runtime/runtime.c).
public enum SafeTensors {
    /// One tensor: its dtype name (F32, I64, I32, U8), shape and raw bytes.
    public struct Tensor: Equatable, Sendable {
        public var dtype: String
        public var shape: [Int]
        public var bytes: Data

        public init(dtype: String, shape: [Int], bytes: Data) {
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        public init(_ values: [Float], shape: [Int]) {
            self.init(dtype: "F32", shape: shape, bytes: values.withUnsafeBytes { Data($0) })
        }

        public init(int64 values: [Int64], shape: [Int]) {
            self.init(dtype: "I64", shape: shape, bytes: values.withUnsafeBytes { Data($0) })
        }

        /// The values as floats (F32 only; other dtypes are converted).
        public var floats: [Float] {
            switch dtype {
            case "F32": return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            case "F64": return bytes.withUnsafeBytes { $0.bindMemory(to: Double.self).map(Float.init) }
            case "I64": return bytes.withUnsafeBytes { $0.bindMemory(to: Int64.self).map(Float.init) }
            case "I32": return bytes.withUnsafeBytes { $0.bindMemory(to: Int32.self).map(Float.init) }
            case "U8": return bytes.map(Float.init)
            default: return []
            }
        }

        /// The values as integers (I64, I32, U8).
        public var ints: [Int] {
            switch dtype {
            case "I64": return bytes.withUnsafeBytes { $0.bindMemory(to: Int64.self).map { Int($0) } }
            case "I32": return bytes.withUnsafeBytes { $0.bindMemory(to: Int32.self).map { Int($0) } }
            case "U8": return bytes.map { Int($0) }
            default: return floats.map { Int($0) }
            }
        }
    }

    static let sizes = ["F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "F16": 2, "BF16": 2, "I8": 1, "I16": 2, "BOOL": 1]

    /// Reads every tensor of a file.
    public static func read(_ path: String) throws -> [String: Tensor] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CompileError("cannot read \(path)")
        }
        return try decode(data, source: path)
    }

    public static func decode(_ data: Data, source: String) throws -> [String: Tensor] {
        guard data.count >= 8 else { throw CompileError("\(source): not a safetensors file (\(data.count) bytes)") }
        let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard n <= UInt64(data.count - 8) else { throw CompileError("\(source): header length \(n) exceeds the file") }
        let headerEnd = 8 + Int(n)
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)) as? [String: Any] else {
            throw CompileError("\(source): header is not a JSON object")
        }
        let body = data.subdata(in: headerEnd..<data.count)
        var out: [String: Tensor] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int],
                  offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= body.count,
                  let size = sizes[dtype], offsets[1] - offsets[0] == shape.reduce(1, *) * size
            else { throw CompileError("\(source): bad entry for tensor '\(name)'") }
            out[name] = Tensor(dtype: dtype, shape: shape, bytes: body.subdata(in: offsets[0]..<offsets[1]))
        }
        return out
    }

    /// Writes tensors in the given order, atomically.
    public static func write(_ tensors: [(String, Tensor)], to path: String) throws {
        let data = encode(tensors)
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CompileError("cannot write \(path): \(error.localizedDescription)")
        }
    }

    /// A safetensors file's bytes, tensors in the given order.
    public static func encode(_ tensors: [(String, Tensor)]) -> Data {
        var header = "{\"__metadata__\":{\"format\":\"pt\"}"
        var offset = 0
        for (name, t) in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            header += ",\"\(name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}"
            offset += t.bytes.count
        }
        header += "}"
        while header.utf8.count % 8 != 0 { header += " " }
        var data = Data()
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(Data(header.utf8))
        for (_, t) in tensors { data.append(t.bytes) }
        return data
    }
}
