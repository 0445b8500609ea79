/// Constant tensors of an ONNX graph and the ops that compute them at import
/// time (the importer's constant-folding pass).
///
/// An exported graph computes some values from constants and static shapes
/// only: the pads of an option-A shortcut (Constant → ConstantOfShape →
/// Concat → Reshape → Slice → Transpose → Reshape → Cast) or the target of a
/// flatten (Shape → Gather → Unsqueeze → Concat). Those are evaluated here, so
/// the pattern matcher sees plain numbers. Integer tensors may hold the batch
/// size as a symbol (`nil`): it is known only at run time, flows through
/// indexing ops (Gather, Concat, Slice, Reshape, …) and is an error in
/// arithmetic. Every op checks its arguments and throws a reason; sizes are
/// bounded so a hostile file cannot make it allocate without limit.
struct ConstTensor: Equatable {
    enum Storage: Equatable {
        case float([Float])
        /// nil: the batch size (symbolic).
        case int([Int64?])
    }
    var dims: [Int]
    var storage: Storage

    /// Largest constant the importer builds (elements).
    static let maxElements = 1 << 28

    var count: Int {
        switch storage {
        case let .float(v): v.count
        case let .int(v): v.count
        }
    }

    init(dims: [Int], storage: Storage) {
        self.dims = dims
        self.storage = storage
    }

    init(floats: [Float], dims: [Int]) { self.init(dims: dims, storage: .float(floats)) }
    init(ints: [Int64?], dims: [Int]) { self.init(dims: dims, storage: .int(ints)) }

    /// Elements of `dims`, or a reason when a dim is negative or the count too large.
    static func elementCount(_ dims: [Int]) throws -> Int {
        var n = 1
        for d in dims {
            guard d >= 0 else { throw Reason("negative dimension \(d)") }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard !o, p <= maxElements else { throw Reason("tensor of \(dims.map(String.init).joined(separator: "×")) elements is too large") }
            n = p
        }
        return n
    }

    static func typeName(_ t: Int64) -> String {
        let names: [Int64: String] = [0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
                                      7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32",
                                      13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16"]
        return "\(names[t] ?? "type") (\(t))"
    }

    /// Decodes a TensorProto: FLOAT and DOUBLE become floats; INT64, INT32,
    /// INT16, INT8, UINT8, UINT16, UINT32 and BOOL become integers.
    init(_ t: ONNXTensor) throws {
        if t.external { throw Reason("tensor '\(t.name)' keeps its data in an external file (not supported; save the model with the data inside)") }
        guard t.dims.allSatisfy({ $0 >= 0 && $0 <= Int64(Self.maxElements) }) else {
            throw Reason("tensor '\(t.name)' has dims \(t.dims)")
        }
        let dims = t.dims.map { Int($0) }
        let n = try Self.elementCount(dims)
        func checked<T>(_ values: [T], _ size: Int, _ fromRaw: (UnsafeRawBufferPointer, Int) -> T) throws -> [T] {
            if let raw = t.raw {
                guard raw.count == n * size else {
                    throw Reason("tensor '\(t.name)': raw_data has \(raw.count) bytes, \(n) × \(size) expected")
                }
                return raw.withUnsafeBytes { buffer in (0..<n).map { fromRaw(buffer, $0 * size) } }
            }
            guard values.count == n else { throw Reason("tensor '\(t.name)': \(values.count) values for \(n) elements") }
            return values
        }
        func le<U: FixedWidthInteger>(_ b: UnsafeRawBufferPointer, _ o: Int, _: U.Type) -> U {
            U(littleEndian: b.loadUnaligned(fromByteOffset: o, as: U.self))
        }
        switch t.dataType {
        case 1:
            let v = try checked(t.floatData, 4) { b, o in Float(bitPattern: le(b, o, UInt32.self)) }
            self.init(floats: v, dims: dims)
        case 11:
            let v = try checked(t.doubleData, 8) { b, o in Double(bitPattern: le(b, o, UInt64.self)) }
            self.init(floats: v.map { Float($0) }, dims: dims)
        case 7:
            let v = try checked(t.int64Data, 8) { b, o in Int64(bitPattern: le(b, o, UInt64.self)) }
            self.init(ints: v, dims: dims)
        case 6, 5, 3, 2, 4, 9, 12:
            let size = [6: 4, 5: 2, 3: 1, 2: 1, 4: 2, 9: 1, 12: 4][t.dataType]!
            let v = try checked(t.int32Data, size) { b, o -> Int64 in
                switch t.dataType {
                case 6: Int64(Int32(bitPattern: le(b, o, UInt32.self)))
                case 5: Int64(Int16(bitPattern: le(b, o, UInt16.self)))
                case 3: Int64(Int8(bitPattern: b[o]))
                case 4: Int64(le(b, o, UInt16.self))
                case 12: Int64(le(b, o, UInt32.self))
                default: Int64(b[o])
                }
            }
            self.init(ints: v, dims: dims)
        default:
            throw Reason("tensor '\(t.name)' has data type \(Self.typeName(t.dataType)), which is not supported")
        }
    }

    /// The values as floats (integers converted); the batch symbol is an error.
    func floats() throws -> [Float] {
        switch storage {
        case let .float(v): return v
        case let .int(v):
            return try v.map { guard let x = $0 else { throw Reason("a value depends on the batch size") }; return Float(x) }
        }
    }

    /// The values as integers; floats must be whole numbers, the batch symbol stays nil.
    func ints() throws -> [Int64?] {
        switch storage {
        case let .int(v): return v
        case let .float(v):
            return try v.map {
                guard $0.isFinite, $0 == $0.rounded(.towardZero), abs($0) < 9.2e18 else { throw Reason("\($0) is not an integer") }
                return Int64($0)
            }
        }
    }

    /// Integers with no batch symbol.
    func staticInts() throws -> [Int] {
        try ints().map {
            guard let x = $0 else { throw Reason("a value depends on the batch size") }
            guard let i = Int(exactly: x) else { throw Reason("\(x) is out of range") }
            return i
        }
    }

    /// Picks elements by flat index into a tensor of `dims`.
    func picking(_ indices: [Int], dims: [Int]) -> ConstTensor {
        switch storage {
        case let .float(v): ConstTensor(floats: indices.map { v[$0] }, dims: dims)
        case let .int(v): ConstTensor(ints: indices.map { v[$0] }, dims: dims)
        }
    }

    /// Row-major strides of `dims`.
    static func strides(_ dims: [Int]) -> [Int] {
        var s = Array(repeating: 1, count: dims.count)
        var k = dims.count - 2
        while k >= 0 { s[k] = s[k + 1] * dims[k + 1]; k -= 1 }
        return s
    }

    /// Flat indices of the cartesian product of per-axis index lists.
    static func product(_ perAxis: [[Int]], strides: [Int]) throws -> [Int] {
        _ = try elementCount(perAxis.map(\.count))
        var out = [0]
        for (axis, list) in perAxis.enumerated() {
            var next: [Int] = []
            next.reserveCapacity(out.count * list.count)
            for base in out { for i in list { next.append(base + i * strides[axis]) } }
            out = next
        }
        return out
    }
}

/// Why an op cannot be evaluated (the importer adds the node).
struct Reason: Error {
    var text: String
    init(_ text: String) { self.text = text }
}

/// Normalises an axis of a rank-`rank` tensor (negative counts from the end).
func normaliseAxis(_ axis: Int, rank: Int) throws -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0, a < rank else { throw Reason("axis \(axis) is out of range for rank \(rank)") }
    return a
}

/// Constant-folding evaluation of one op on constant inputs.
enum ConstantOps {
    /// The ops this evaluator knows, for the importer's dispatch.
    static let names: Set<String> = [
        "Constant", "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Gather",
        "Unsqueeze", "Squeeze", "Identity", "Add", "Sub", "Mul", "Div", "Flatten", "Shape",
    ]

    static func evaluate(_ node: ONNXNode, _ inputs: [ConstTensor?], opset: Int64) throws -> ConstTensor {
        func input(_ k: Int) throws -> ConstTensor {
            guard k < inputs.count, let t = inputs[k] else { throw Reason("input #\(k + 1) is missing") }
            return t
        }
        func optionalInput(_ k: Int) -> ConstTensor? { k < inputs.count ? inputs[k] : nil }
        let attrs = node.attributes
        switch node.opType {
        case "Constant":
            if let t = attrs["value"]?.t { return try ConstTensor(t) }
            if let a = attrs["value_float"] { return ConstTensor(floats: [a.f], dims: []) }
            if let a = attrs["value_floats"] { return ConstTensor(floats: a.floats, dims: [a.floats.count]) }
            if let a = attrs["value_int"] { return ConstTensor(ints: [a.i], dims: []) }
            if let a = attrs["value_ints"] { return ConstTensor(ints: a.ints, dims: [a.ints.count]) }
            throw Reason("a Constant without value, value_float(s) or value_int(s) is not supported")
        case "Identity":
            return try input(0)
        case "ConstantOfShape":
            let dims = try input(0).staticInts()
            let n = try ConstTensor.elementCount(dims)
            if let t = attrs["value"]?.t {
                let v = try ConstTensor(t)
                guard v.count == 1 else { throw Reason("value must have one element") }
                switch v.storage {
                case let .float(x): return ConstTensor(floats: Array(repeating: x[0], count: n), dims: dims)
                case let .int(x): return ConstTensor(ints: Array(repeating: x[0], count: n), dims: dims)
                }
            }
            return ConstTensor(floats: Array(repeating: 0, count: n), dims: dims)
        case "Cast":
            let x = try input(0)
            guard let to = attrs["to"]?.i else { throw Reason("Cast without 'to'") }
            switch to {
            case 1, 11: return ConstTensor(floats: try x.floats(), dims: x.dims)
            case 9: return ConstTensor(ints: try x.ints().map { $0.map { $0 != 0 ? 1 : 0 } }, dims: x.dims)
            case 2, 3, 4, 5, 6, 7, 12, 13: return ConstTensor(ints: try x.ints(), dims: x.dims)
            default: throw Reason("Cast to \(ConstTensor.typeName(to)) is not supported")
            }
        case "Reshape":
            let x = try input(0)
            let target = try input(1).staticInts()
            let allowZero = (attrs["allowzero"]?.i ?? 0) != 0
            return ConstTensor(dims: try reshape(x.dims, target, allowZero: allowZero), storage: x.storage)
        case "Flatten":
            let x = try input(0)
            let axis = try normaliseAxis(Int(attrs["axis"]?.i ?? 1), rank: x.dims.count + 1)
            return ConstTensor(dims: [x.dims[..<axis].reduce(1, *), x.dims[axis...].reduce(1, *)], storage: x.storage)
        case "Unsqueeze", "Squeeze":
            let x = try input(0)
            let axes: [Int]? = try opset >= 13 ? optionalInput(1)?.staticInts() : attrs["axes"]?.ints.map { Int($0) }
            if node.opType == "Unsqueeze" {
                guard let axes else { throw Reason("Unsqueeze needs axes") }
                return ConstTensor(dims: try unsqueeze(x.dims, axes), storage: x.storage)
            }
            return ConstTensor(dims: try squeeze(x.dims, axes), storage: x.storage)
        case "Concat":
            guard let a = attrs["axis"]?.i else { throw Reason("Concat without axis") }
            let parts = try (0..<inputs.count).map(input)
            return try concat(parts, axis: Int(a))
        case "Transpose":
            let x = try input(0)
            let perm = attrs["perm"].map { $0.ints.map { Int($0) } } ?? Array((0..<x.dims.count).reversed())
            guard perm.sorted() == Array(0..<x.dims.count) else { throw Reason("perm \(perm) is not a permutation of the \(x.dims.count) axes") }
            let strides = ConstTensor.strides(x.dims)
            let outDims = perm.map { x.dims[$0] }
            let indices = try ConstTensor.product(perm.map { Array(0..<x.dims[$0]) }, strides: perm.map { strides[$0] })
            return x.picking(indices, dims: outDims)
        case "Slice":
            let x = try input(0)
            let starts = try input(1).staticInts(), ends = try input(2).staticInts()
            let axes = try optionalInput(3)?.staticInts() ?? Array(0..<starts.count)
            let steps = try optionalInput(4)?.staticInts() ?? Array(repeating: 1, count: starts.count)
            let perAxis = try sliceIndices(x.dims, starts: starts, ends: ends, axes: axes, steps: steps)
            return x.picking(try ConstTensor.product(perAxis, strides: ConstTensor.strides(x.dims)), dims: perAxis.map(\.count))
        case "Gather":
            let x = try input(0), idx = try input(1)
            let axis = try normaliseAxis(Int(attrs["axis"]?.i ?? 0), rank: x.dims.count)
            let n = x.dims[axis]
            let picks = try idx.staticInts().map { i -> Int in
                let j = i < 0 ? i + n : i
                guard j >= 0, j < n else { throw Reason("index \(i) out of range for dimension \(n)") }
                return j
            }
            var perAxis = x.dims.map { Array(0..<$0) }
            perAxis[axis] = picks
            let flat = try ConstTensor.product(perAxis, strides: ConstTensor.strides(x.dims))
            return x.picking(flat, dims: Array(x.dims[..<axis]) + idx.dims + Array(x.dims[(axis + 1)...]))
        case "Add", "Sub", "Mul", "Div":
            return try binary(node.opType, try input(0), try input(1))
        default:
            throw Reason("cannot evaluate \(node.opType) at import")
        }
    }

    /// ONNX Reshape's target: 0 copies the input dim (unless allowzero), one −1 is inferred.
    static func reshape(_ dims: [Int], _ target: [Int], allowZero: Bool) throws -> [Int] {
        var out = target
        var inferred: Int?
        for (k, d) in target.enumerated() {
            if d == 0 && !allowZero {
                guard k < dims.count else { throw Reason("shape entry 0 at position \(k) has no input dimension to copy") }
                out[k] = dims[k]
            } else if d == -1 {
                guard inferred == nil else { throw Reason("shape \(target) has more than one -1") }
                inferred = k
            } else if d < 0 {
                throw Reason("shape entry \(d) is negative")
            }
        }
        let total = try ConstTensor.elementCount(dims)
        if let k = inferred {
            out[k] = 1
            let rest = try ConstTensor.elementCount(out)
            guard rest > 0, total % rest == 0 else { throw Reason("cannot reshape \(dims) to \(target)") }
            out[k] = total / rest
        }
        guard try ConstTensor.elementCount(out) == total else { throw Reason("cannot reshape \(dims) to \(target)") }
        return out
    }

    static func unsqueeze(_ dims: [Int], _ axes: [Int]) throws -> [Int] {
        let rank = dims.count + axes.count
        let normalised = try axes.map { try normaliseAxis($0, rank: rank) }
        guard Set(normalised).count == normalised.count else { throw Reason("repeated axis in \(axes)") }
        var out: [Int] = []
        var it = dims.makeIterator()
        for k in 0..<rank { out.append(normalised.contains(k) ? 1 : it.next()!) }
        return out
    }

    static func squeeze(_ dims: [Int], _ axes: [Int]?) throws -> [Int] {
        guard let axes else { return dims.filter { $0 != 1 } }
        let normalised = try axes.map { try normaliseAxis($0, rank: dims.count) }
        for a in normalised where dims[a] != 1 { throw Reason("cannot squeeze axis \(a) of size \(dims[a])") }
        return dims.enumerated().filter { !normalised.contains($0.offset) }.map(\.element)
    }

    static func concat(_ parts: [ConstTensor], axis: Int) throws -> ConstTensor {
        guard let first = parts.first else { throw Reason("Concat of nothing") }
        let a = try normaliseAxis(axis, rank: first.dims.count)
        for p in parts where p.dims.count != first.dims.count || p.dims.enumerated().contains(where: { $0.offset != a && $0.element != first.dims[$0.offset] }) {
            throw Reason("Concat of mismatched shapes \(first.dims) and \(p.dims)")
        }
        let outer = first.dims[..<a].reduce(1, *)
        var dims = first.dims
        dims[a] = parts.reduce(0) { $0 + $1.dims[a] }
        _ = try ConstTensor.elementCount(dims)
        let isFloat = parts.contains { if case .float = $0.storage { true } else { false } }
        if isFloat {
            let values = try parts.map { try $0.floats() }
            var out: [Float] = []
            for o in 0..<outer {
                for (p, v) in zip(parts, values) {
                    let chunk = p.dims[a...].reduce(1, *)
                    out += v[(o * chunk)..<((o + 1) * chunk)]
                }
            }
            return ConstTensor(floats: out, dims: dims)
        }
        let values = try parts.map { try $0.ints() }
        var out: [Int64?] = []
        for o in 0..<outer {
            for (p, v) in zip(parts, values) {
                let chunk = p.dims[a...].reduce(1, *)
                out += v[(o * chunk)..<((o + 1) * chunk)]
            }
        }
        return ConstTensor(ints: out, dims: dims)
    }

    /// Per-axis indices ONNX Slice takes (starts/ends clamped as the spec says).
    static func sliceIndices(_ dims: [Int], starts: [Int], ends: [Int], axes: [Int], steps: [Int]) throws -> [[Int]] {
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count else {
            throw Reason("starts, ends, axes and steps differ in length")
        }
        var perAxis = dims.map { Array(0..<$0) }
        var seen = Set<Int>()
        for k in starts.indices {
            let a = try normaliseAxis(axes[k], rank: dims.count)
            guard seen.insert(a).inserted else { throw Reason("axis \(a) sliced twice") }
            let n = dims[a], step = steps[k]
            guard step != 0 else { throw Reason("slice step 0") }
            var s = starts[k] < 0 ? starts[k] &+ n : starts[k]
            var e = ends[k] < 0 ? ends[k] &+ n : ends[k]
            if step > 0 {
                s = min(max(s, 0), n); e = min(max(e, 0), n)
                perAxis[a] = s < e ? Array(stride(from: s, to: e, by: step)) : []
            } else {
                s = min(max(s, -1), n - 1); e = min(max(e, -1), n - 1)
                perAxis[a] = s > e ? Array(stride(from: s, to: e, by: step)) : []
            }
        }
        return perAxis
    }

    /// Elementwise arithmetic with numpy broadcasting.
    static func binary(_ op: String, _ x: ConstTensor, _ y: ConstTensor) throws -> ConstTensor {
        let rank = max(x.dims.count, y.dims.count)
        let xd = Array(repeating: 1, count: rank - x.dims.count) + x.dims
        let yd = Array(repeating: 1, count: rank - y.dims.count) + y.dims
        var dims: [Int] = []
        for (a, b) in zip(xd, yd) {
            guard a == b || a == 1 || b == 1 else { throw Reason("cannot broadcast \(x.dims) with \(y.dims)") }
            dims.append(a == 1 ? b : a)
        }
        func index(_ d: [Int]) throws -> [Int] {
            let s = ConstTensor.strides(d)
            return try ConstTensor.product(dims.indices.map { k in d[k] == 1 ? Array(repeating: 0, count: dims[k]) : Array(0..<dims[k]) }, strides: s)
        }
        let xi = try index(xd), yi = try index(yd)
        if case .int = x.storage, case .int = y.storage {
            let a = try x.staticInts(), b = try y.staticInts()
            let v = try zip(xi, yi).map { i, j -> Int64? in
                let (p, q) = (a[i], b[j])
                let (r, o): (Int, Bool)
                switch op {
                case "Add": (r, o) = p.addingReportingOverflow(q)
                case "Sub": (r, o) = p.subtractingReportingOverflow(q)
                case "Mul": (r, o) = p.multipliedReportingOverflow(by: q)
                default:
                    guard q != 0 else { throw Reason("integer division by zero") }
                    (r, o) = p.dividedReportingOverflow(by: q)
                }
                guard !o else { throw Reason("integer overflow") }
                return Int64(r)
            }
            return ConstTensor(ints: v, dims: dims)
        }
        let a = try x.floats(), b = try y.floats()
        let v = zip(xi, yi).map { i, j -> Float in
            switch op {
            case "Add": a[i] + b[j]
            case "Sub": a[i] - b[j]
            case "Mul": a[i] * b[j]
            default: a[i] / b[j]
            }
        }
        return ConstTensor(floats: v, dims: dims)
    }
}
