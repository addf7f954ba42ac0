'use strict';
// Minimal ONNX ModelProto encoder, so the bench can build its peer models at run
// time instead of shipping .onnx files or pulling in a protobuf dependency.
// Only the handful of fields the peers need are covered; field numbers follow
// onnx/onnx.proto (proto2, which accepts packed repeated scalars).

const WIRE_VARINT = 0;
const WIRE_I32 = 5;
const WIRE_LEN = 2;

// Numbers (not BigInt) are enough here: dims, enums and versions are small and
// non-negative; refusing anything else keeps the encoder from writing garbage.
function varint(n) {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint: unsupported value ${n}`);
  const out = [];
  while (n > 0x7f) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Buffer.from(out);
}

const key = (field, wire) => varint(field * 8 + wire);
const uintField = (field, n) => Buffer.concat([key(field, WIRE_VARINT), varint(n)]);
const bytesField = (field, buf) => Buffer.concat([key(field, WIRE_LEN), varint(buf.length), buf]);
const stringField = (field, s) => bytesField(field, Buffer.from(s, 'utf8'));
const message = (field, parts) => bytesField(field, Buffer.concat(parts));

function floatField(field, x) {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return Buffer.concat([key(field, WIRE_I32), b]);
}

// TensorProto.DataType / AttributeProto.AttributeType values used by the peers.
const DataType = { FLOAT: 1 };
const AttrType = { FLOAT: 1, INT: 2 };

// ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2: {dim=1: {dim_value=1}}}}}
function valueInfo(name, dims, elemType = DataType.FLOAT) {
  const shape = dims.map((d) => message(1, [uintField(1, d)]));
  const tensorType = [uintField(1, elemType), message(2, shape)];
  return [stringField(1, name), message(2, [message(1, tensorType)])];
}

// TensorProto{dims=1, data_type=2, name=8, raw_data=9}; raw_data is little-endian,
// which is what Float32Array holds on every platform Node supports.
function floatTensor(name, dims, data) {
  return [
    ...dims.map((d) => uintField(1, d)),
    uintField(2, DataType.FLOAT),
    stringField(8, name),
    bytesField(9, Buffer.from(data.buffer, data.byteOffset, data.byteLength)),
  ];
}

// AttributeProto{name=1, f=2, i=3, type=20}. A plain number is an INT attribute;
// FLOAT ones are spelled { float: x } because JS cannot tell 1.0 from 1.
function attribute(name, value) {
  const parts = [stringField(1, name)];
  if (typeof value === 'number') parts.push(uintField(3, value), uintField(20, AttrType.INT));
  else parts.push(floatField(2, value.float), uintField(20, AttrType.FLOAT));
  return parts;
}

// NodeProto{input=1, output=2, name=3, op_type=4, attribute=5, domain=7}.
// An empty input name marks an omitted optional input, as ONNX specifies.
function node({ opType, domain = '', inputs, outputs, attributes = {}, name = opType }) {
  return [
    ...inputs.map((s) => stringField(1, s)),
    ...outputs.map((s) => stringField(2, s)),
    stringField(3, name),
    stringField(4, opType),
    ...Object.entries(attributes).map(([k, v]) => message(5, attribute(k, v))),
    stringField(7, domain),
  ];
}

/**
 * Encode a single-graph ONNX model.
 * @param {object} spec
 * @param {Array<object>} spec.nodes          see node()
 * @param {Array<{name, dims}>} spec.inputs   float32 graph inputs
 * @param {Array<{name, dims}>} spec.outputs  float32 graph outputs
 * @param {Array<{name, dims, data}>} [spec.initializers] float32 constants
 * @param {Object<string, number>} spec.opsets domain -> opset version
 * @param {number} [spec.irVersion]
 * @returns {Uint8Array} serialized ModelProto
 */
function encodeModel({ nodes, inputs, outputs, initializers = [], opsets, irVersion = 8, graphName = 'g' }) {
  // GraphProto{node=1, name=2, initializer=5, input=11, output=12}
  const graph = [
    ...nodes.map((n) => message(1, node(n))),
    stringField(2, graphName),
    ...initializers.map((t) => message(5, floatTensor(t.name, t.dims, t.data))),
    ...inputs.map((v) => message(11, valueInfo(v.name, v.dims))),
    ...outputs.map((v) => message(12, valueInfo(v.name, v.dims))),
  ];
  // ModelProto{ir_version=1, producer_name=2, graph=7, opset_import=8: {domain=1, version=2}}
  return Buffer.concat([
    uintField(1, irVersion),
    stringField(2, 'attnkit-bench'),
    message(7, graph),
    ...Object.entries(opsets).map(([domain, version]) =>
      message(8, [stringField(1, domain), uintField(2, version)])),
  ]);
}

module.exports = { encodeModel };
