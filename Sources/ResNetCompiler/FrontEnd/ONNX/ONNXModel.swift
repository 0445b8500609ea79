/// The part of an ONNX `ModelProto` the importer reads, decoded by
/// `ProtobufReader` (field numbers from onnx.proto). Fields it does not need
/// (doc strings, metadata, training info, functions, sub-graphs) are skipped.
struct ONNXModel {
    var irVersion: Int64 = 0
    /// Opset version per operator domain ("" is the default ONNX domain).
    var opsets: [String: Int64] = [:]
    var graph = ONNXGraph()

    /// Decodes a serialized `ModelProto`.
    static func decode(_ bytes: [UInt8], source: String) throws -> ONNXModel {
        var r = ProtobufReader(bytes, source: source)
        var model = ONNXModel()
        var sawGraph = false
        while !r.atEnd {
            let tag = try r.tag()
            switch tag.field {
            case 1:
                try r.expect(tag, 0, "ModelProto.ir_version")
                model.irVersion = try r.int64()
            case 7:
                try r.expect(tag, 2, "ModelProto.graph")
                var g = try r.message()
                model.graph = try ONNXGraph.decode(&g)
                sawGraph = true
            case 8:
                try r.expect(tag, 2, "ModelProto.opset_import")
                var m = try r.message()
                var domain = "", version: Int64 = 0
                while !m.atEnd {
                    let t = try m.tag()
                    switch t.field {
                    case 1: try m.expect(t, 2, "OperatorSetIdProto.domain"); domain = try m.string()
                    case 2: try m.expect(t, 0, "OperatorSetIdProto.version"); version = try m.int64()
                    default: try m.skip(t.wireType)
                    }
                }
                model.opsets[domain == "ai.onnx" ? "" : domain] = version
            default:
                try r.skip(tag.wireType)
            }
        }
        if !sawGraph { throw CompileError("\(source): not an ONNX model (no graph; truncated or not a ModelProto?)") }
        return model
    }
}

struct ONNXGraph {
    var name = ""
    var nodes: [ONNXNode] = []
    var initializers: [ONNXTensor] = []
    var inputs: [ONNXValueInfo] = []
    var outputs: [ONNXValueInfo] = []

    static func decode(_ r: inout ProtobufReader) throws -> ONNXGraph {
        var g = ONNXGraph()
        while !r.atEnd {
            let tag = try r.tag()
            switch tag.field {
            case 1:
                try r.expect(tag, 2, "GraphProto.node")
                var m = try r.message()
                g.nodes.append(try ONNXNode.decode(&m))
            case 2:
                try r.expect(tag, 2, "GraphProto.name")
                g.name = try r.string()
            case 5:
                try r.expect(tag, 2, "GraphProto.initializer")
                var m = try r.message()
                g.initializers.append(try ONNXTensor.decode(&m))
            case 11, 12:
                try r.expect(tag, 2, "GraphProto.input/output")
                var m = try r.message()
                let info = try ONNXValueInfo.decode(&m)
                if tag.field == 11 { g.inputs.append(info) } else { g.outputs.append(info) }
            case 15:
                try r.expect(tag, 2, "GraphProto.sparse_initializer")
                throw r.error("sparse initializers are not supported")
            default:
                try r.skip(tag.wireType)
            }
        }
        return g
    }
}

struct ONNXNode {
    var name = ""
    var opType = ""
    var domain = ""
    var inputs: [String] = []
    var outputs: [String] = []
    var attributes: [String: ONNXAttribute] = [:]

    static func decode(_ r: inout ProtobufReader) throws -> ONNXNode {
        var n = ONNXNode()
        while !r.atEnd {
            let tag = try r.tag()
            switch tag.field {
            case 1: try r.expect(tag, 2, "NodeProto.input"); n.inputs.append(try r.string())
            case 2: try r.expect(tag, 2, "NodeProto.output"); n.outputs.append(try r.string())
            case 3: try r.expect(tag, 2, "NodeProto.name"); n.name = try r.string()
            case 4: try r.expect(tag, 2, "NodeProto.op_type"); n.opType = try r.string()
            case 7: try r.expect(tag, 2, "NodeProto.domain"); n.domain = try r.string()
            case 5:
                try r.expect(tag, 2, "NodeProto.attribute")
                var m = try r.message()
                let a = try ONNXAttribute.decode(&m)
                n.attributes[a.name] = a
            default:
                try r.skip(tag.wireType)
            }
        }
        if n.domain == "ai.onnx" { n.domain = "" }
        return n
    }
}

/// One attribute; which value field is meaningful depends on `type`
/// (AttributeProto.AttributeType: 1 FLOAT, 2 INT, 3 STRING, 4 TENSOR, 5 GRAPH,
/// 6 FLOATS, 7 INTS, 8 STRINGS, …).
struct ONNXAttribute {
    var name = ""
    var type: Int64 = 0
    var f: Float = 0
    var i: Int64 = 0
    var s: [UInt8] = []
    var t: ONNXTensor?
    var floats: [Float] = []
    var ints: [Int64] = []
    /// Set when the attribute holds a graph, tensors or other kinds the importer does not read.
    var other = false

    static func decode(_ r: inout ProtobufReader) throws -> ONNXAttribute {
        var a = ONNXAttribute()
        while !r.atEnd {
            let tag = try r.tag()
            switch tag.field {
            case 1: try r.expect(tag, 2, "AttributeProto.name"); a.name = try r.string()
            case 20: try r.expect(tag, 0, "AttributeProto.type"); a.type = try r.int64()
            case 2: try r.expect(tag, 5, "AttributeProto.f"); a.f = try r.float()
            case 3: try r.expect(tag, 0, "AttributeProto.i"); a.i = try r.int64()
            case 4: try r.expect(tag, 2, "AttributeProto.s"); a.s = try r.bytesField()
            case 5:
                try r.expect(tag, 2, "AttributeProto.t")
                var m = try r.message()
                a.t = try ONNXTensor.decode(&m)
            case 7: try r.repeatedFloat(tag, into: &a.floats, "AttributeProto.floats")
            case 8: try r.repeatedInt64(tag, into: &a.ints, "AttributeProto.ints")
            case 6, 9, 10, 11, 14, 15, 22, 23:
                a.other = true
                try r.skip(tag.wireType)
            default:
                try r.skip(tag.wireType)
            }
        }
        return a
    }

    var string: String { String(decoding: s, as: UTF8.self) }
}

/// A tensor's header and data as stored: `raw_data` (little-endian bytes) or
/// the typed repeated fields.
struct ONNXTensor {
    var name = ""
    var dims: [Int64] = []
    /// TensorProto.DataType: 1 FLOAT, 2 UINT8, 3 INT8, 5 INT16, 6 INT32, 7 INT64, 9 BOOL, 10 FLOAT16, 11 DOUBLE, …
    var dataType: Int64 = 0
    var raw: [UInt8]?
    var floatData: [Float] = []
    var int32Data: [Int64] = []
    var int64Data: [Int64] = []
    var doubleData: [Double] = []
    /// data_location EXTERNAL (1): the data is in another file.
    var external = false

    static func decode(_ r: inout ProtobufReader) throws -> ONNXTensor {
        var t = ONNXTensor()
        while !r.atEnd {
            let tag = try r.tag()
            switch tag.field {
            case 1: try r.repeatedInt64(tag, into: &t.dims, "TensorProto.dims")
            case 2: try r.expect(tag, 0, "TensorProto.data_type"); t.dataType = try r.int64()
            case 4: try r.repeatedFloat(tag, into: &t.floatData, "TensorProto.float_data")
            case 5: try r.repeatedInt64(tag, into: &t.int32Data, "TensorProto.int32_data")
            case 7: try r.repeatedInt64(tag, into: &t.int64Data, "TensorProto.int64_data")
            case 8: try r.expect(tag, 2, "TensorProto.name"); t.name = try r.string()
            case 9: try r.expect(tag, 2, "TensorProto.raw_data"); t.raw = try r.bytesField()
            case 10: try r.repeatedDouble(tag, into: &t.doubleData, "TensorProto.double_data")
            case 14: try r.expect(tag, 0, "TensorProto.data_location"); t.external = try r.int64() == 1
            case 3: throw r.error("segmented tensors are not supported")
            default: try r.skip(tag.wireType)
            }
        }
        return t
    }
}

/// A graph input's or output's declared type: element type and dims (a dim is
/// a number, a symbolic name, or unknown).
struct ONNXValueInfo {
    enum Dim: Equatable {
        case value(Int64)
        case param(String)
        case unknown
    }
    var name = ""
    /// TensorProto.DataType of the elements; nil when the type is not a tensor type.
    var elemType: Int64?
    /// nil when the shape is not given.
    var dims: [Dim]?

    static func decode(_ r: inout ProtobufReader) throws -> ONNXValueInfo {
        var v = ONNXValueInfo()
        while !r.atEnd {
            let tag = try r.tag()
            switch tag.field {
            case 1: try r.expect(tag, 2, "ValueInfoProto.name"); v.name = try r.string()
            case 2:
                try r.expect(tag, 2, "ValueInfoProto.type")
                var type = try r.message()
                while !type.atEnd {
                    let t = try type.tag()
                    guard t.field == 1 else { try type.skip(t.wireType); continue }   // TypeProto.tensor_type
                    try type.expect(t, 2, "TypeProto.tensor_type")
                    var tensor = try type.message()
                    v.elemType = 0
                    while !tensor.atEnd {
                        let u = try tensor.tag()
                        switch u.field {
                        case 1: try tensor.expect(u, 0, "TypeProto.Tensor.elem_type"); v.elemType = try tensor.int64()
                        case 2:
                            try tensor.expect(u, 2, "TypeProto.Tensor.shape")
                            var shape = try tensor.message()
                            var dims: [Dim] = []
                            while !shape.atEnd {
                                let s = try shape.tag()
                                guard s.field == 1 else { try shape.skip(s.wireType); continue }
                                try shape.expect(s, 2, "TensorShapeProto.dim")
                                var d = try shape.message()
                                var dim = Dim.unknown
                                while !d.atEnd {
                                    let e = try d.tag()
                                    switch e.field {
                                    case 1: try d.expect(e, 0, "Dimension.dim_value"); dim = .value(try d.int64())
                                    case 2: try d.expect(e, 2, "Dimension.dim_param"); dim = .param(try d.string())
                                    default: try d.skip(e.wireType)
                                    }
                                }
                                dims.append(dim)
                            }
                            v.dims = dims
                        default: try tensor.skip(u.wireType)
                        }
                    }
                }
            default:
                try r.skip(tag.wireType)
            }
        }
        return v
    }
}
