/// A reader for the protobuf wire format, just enough for ONNX.
///
/// Why our own and not swift-protobuf: there is no `protoc` here to generate
/// code from onnx.proto, the importer needs only a handful of fields of seven
/// messages, and a file is untrusted input, so decoding must stay bounded and
/// never trap. Every read is bounds-checked against the end of the enclosing
/// message and every failure is a thrown `CompileError` naming the byte
/// offset; lengths are checked before any allocation, so a corrupt length
/// cannot make it allocate more than the file holds.
///
/// Wire types: 0 varint, 1 fixed64, 2 length-delimited (strings, bytes,
/// sub-messages, packed repeated scalars), 5 fixed32. Groups (3, 4) are
/// deprecated and rejected.
struct ProtobufReader {
    /// The whole file (shared, never copied; sub-readers are ranges of it).
    let bytes: [UInt8]
    /// Next byte to read.
    private(set) var position: Int
    /// One past the last byte of the message being read.
    let end: Int
    /// Where the file came from, for messages.
    let source: String

    init(_ bytes: [UInt8], source: String) {
        self.bytes = bytes
        self.position = 0
        self.end = bytes.count
        self.source = source
    }

    private init(parent: ProtobufReader, range: Range<Int>) {
        bytes = parent.bytes
        position = range.lowerBound
        end = range.upperBound
        source = parent.source
    }

    /// A field's tag: its number and wire type.
    struct Tag {
        var field: Int
        var wireType: Int
    }

    var atEnd: Bool { position >= end }

    func error(_ what: String, at offset: Int? = nil) -> CompileError {
        CompileError("\(source): malformed ONNX protobuf: \(what) at byte \(offset ?? position)")
    }

    /// A base-128 varint of at most 10 bytes.
    mutating func varint() throws -> UInt64 {
        let start = position
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < end else { throw error("truncated varint", at: start) }
            let byte = bytes[position]
            position += 1
            if shift == 63 && byte > 1 { throw error("varint longer than 64 bits", at: start) }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw error("varint longer than 10 bytes", at: start) }
        }
    }

    mutating func tag() throws -> Tag {
        let start = position
        let v = try varint()
        let field = v >> 3
        guard field >= 1, field <= 536_870_911 else { throw error("field number \(field) out of range", at: start) }
        return Tag(field: Int(field), wireType: Int(v & 7))
    }

    mutating func fixed32() throws -> UInt32 {
        guard end - position >= 4 else { throw error("truncated fixed32") }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[position + k]) << (8 * UInt32(k)) }
        position += 4
        return v
    }

    mutating func fixed64() throws -> UInt64 {
        guard end - position >= 8 else { throw error("truncated fixed64") }
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
        position += 8
        return v
    }

    /// The byte range of a length-delimited field's payload (consumed).
    mutating func lengthDelimited() throws -> Range<Int> {
        let start = position
        let n = try varint()
        guard n <= UInt64(end - position) else {
            throw error("length \(n) runs past the end of the message (\(end - position) bytes left)", at: start)
        }
        let range = position..<(position + Int(n))
        position = range.upperBound
        return range
    }

    /// A sub-message's reader.
    mutating func message() throws -> ProtobufReader {
        ProtobufReader(parent: self, range: try lengthDelimited())
    }

    mutating func bytesField() throws -> [UInt8] {
        Array(bytes[try lengthDelimited()])
    }

    mutating func string() throws -> String {
        let range = try lengthDelimited()
        // Invalid UTF-8 is replaced, not trusted; names are checked later anyway.
        return String(decoding: bytes[range], as: UTF8.self)
    }

    /// An int64 field (varint, two's complement).
    mutating func int64() throws -> Int64 { Int64(bitPattern: try varint()) }

    mutating func float() throws -> Float { Float(bitPattern: try fixed32()) }

    mutating func double() throws -> Double { Double(bitPattern: try fixed64()) }

    /// Skips a field of `wireType` that the importer does not read.
    mutating func skip(_ wireType: Int) throws {
        switch wireType {
        case 0: _ = try varint()
        case 1: _ = try fixed64()
        case 2: _ = try lengthDelimited()
        case 5: _ = try fixed32()
        default: throw error("unsupported wire type \(wireType)")
        }
    }

    /// Checks that a field has the wire type the schema gives it.
    func expect(_ tag: Tag, _ wireType: Int, _ what: String) throws {
        if tag.wireType != wireType { throw error("field \(what) has wire type \(tag.wireType), expected \(wireType)") }
    }

    /// A repeated int64 field, packed (wire type 2) or not (0): appends to `values`.
    mutating func repeatedInt64(_ tag: Tag, into values: inout [Int64], _ what: String) throws {
        if tag.wireType == 0 {
            values.append(try int64())
            return
        }
        try expect(tag, 2, what)
        var packed = try message()
        while !packed.atEnd { values.append(try packed.int64()) }
    }

    /// A repeated float field, packed (2) or not (5).
    mutating func repeatedFloat(_ tag: Tag, into values: inout [Float], _ what: String) throws {
        if tag.wireType == 5 {
            values.append(try float())
            return
        }
        try expect(tag, 2, what)
        var packed = try message()
        guard (packed.end - packed.position) % 4 == 0 else { throw error("packed \(what) is not a whole number of floats") }
        values.reserveCapacity(values.count + (packed.end - packed.position) / 4)
        while !packed.atEnd { values.append(try packed.float()) }
    }

    /// A repeated double field, packed (2) or not (1).
    mutating func repeatedDouble(_ tag: Tag, into values: inout [Double], _ what: String) throws {
        if tag.wireType == 1 {
            values.append(try double())
            return
        }
        try expect(tag, 2, what)
        var packed = try message()
        guard (packed.end - packed.position) % 8 == 0 else { throw error("packed \(what) is not a whole number of doubles") }
        while !packed.atEnd { values.append(try packed.double()) }
    }
}
