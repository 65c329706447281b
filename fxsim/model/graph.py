"""Graph import: an ONNX file or ModelProto -> a plain, checked ``Graph`` (nodes in execution order,
constants as NumPy arrays, graph inputs and outputs). Nothing here knows about datapaths."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from fxsim.errors import InvalidArgument

__all__ = ["ModelError", "Node", "Graph", "read_graph"]


class ModelError(InvalidArgument):
    """A model that cannot be imported or run as given; the message says what and where."""


@dataclass
class Node:
    name: str
    op: str
    domain: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)


@dataclass
class TensorInfo:
    name: str
    dtype: object          # numpy dtype (None when the model does not say)
    shape: tuple | None    # ints, or str for symbolic dimensions, None for unknown rank


@dataclass
class Graph:
    name: str
    nodes: list
    consts: dict
    inputs: list
    outputs: list
    opsets: dict
    source: str = "<model>"
    proto: object = None     # the onnx.ModelProto read (to hand the model to sweep workers)

    def producers(self):
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self):
        out = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ModuleNotFoundError:
        raise ModelError("reading ONNX models needs the onnx package: pip install fxsim[onnx]") from None
    return onnx, numpy_helper


def _load_proto(src):
    onnx, _ = _onnx()
    if isinstance(src, onnx.ModelProto):
        return src, "<ModelProto>"
    if isinstance(src, (bytes, bytearray)):
        data, where = bytes(src), "<bytes>"
    elif isinstance(src, (str, os.PathLike)):
        where = os.fspath(src)
        if not os.path.exists(where):
            raise ModelError(f"model file {where!r} does not exist")
        if os.path.isdir(where):
            raise ModelError(f"model path {where!r} is a directory, not an ONNX file")
        with open(where, "rb") as fh:
            data = fh.read()
    else:
        raise TypeError(f"model must be a path, bytes or an onnx.ModelProto, got {type(src).__name__}")
    if not data:
        raise ModelError(f"{where}: the file is empty, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:   # protobuf's DecodeError: truncated or not a protobuf at all
        raise ModelError(f"{where}: not an ONNX model, or a truncated one ({type(exc).__name__}: {exc})") from None
    if not proto.HasField("graph") or not proto.opset_import:
        raise ModelError(f"{where}: not an ONNX model (no graph or no opset_import in the file)")
    if any(t.data_location == 1 for t in proto.graph.initializer):   # external data next to the file
        if not isinstance(src, (str, os.PathLike)):
            raise ModelError(f"{where}: the model keeps its weights in external files; load it from its path")
        try:
            from onnx.external_data_helper import load_external_data_for_model
            load_external_data_for_model(proto, os.path.dirname(os.path.abspath(where)))
        except Exception as exc:
            raise ModelError(f"{where}: cannot read the external weight files ({exc})") from None
    return proto, where


def _attr(a, where):
    onnx, numpy_helper = _onnx()
    A = onnx.AttributeProto
    if a.type == A.FLOAT:
        return float(np.float32(a.f))
    if a.type == A.INT:
        return int(a.i)
    if a.type == A.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == A.INTS:
        return [int(v) for v in a.ints]
    if a.type == A.FLOATS:
        return [float(v) for v in a.floats]
    if a.type == A.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if a.type == A.TENSOR:
        return _array(a.t, where)
    raise ModelError(f"{where}: attribute {a.name!r} has a type fxsim does not read (graphs and sparse tensors "
                     "are not supported)")


def _array(t, where):
    _, numpy_helper = _onnx()
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:
        raise ModelError(f"{where}: tensor {t.name!r} cannot be read ({exc})") from None
    return np.array(arr)   # writable copy


def _dtype(elem_type):
    onnx, _ = _onnx()
    if not elem_type:
        return None
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


def _info(v):
    t = v.type.tensor_type
    shape = None
    if t.HasField("shape"):
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
    return TensorInfo(v.name, _dtype(t.elem_type), shape)


def read_graph(src) -> Graph:
    """Parse and check a model: every tensor a node reads is produced before it (the nodes are sorted
    into execution order), constants become arrays, and subgraphs are rejected."""
    proto, where = _load_proto(src)
    g = proto.graph
    opsets = {(o.domain or ""): int(o.version) for o in proto.opset_import}
    if "ai.onnx" in opsets:
        opsets.setdefault("", opsets.pop("ai.onnx"))
    consts = {t.name: _array(t, where) for t in g.initializer}
    inputs = [_info(v) for v in g.input if v.name not in consts]
    outputs = [_info(v) for v in g.output]
    raw = []
    for k, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{k}"
        attrs = {a.name: _attr(a, f"{where}: node {name!r} ({n.op_type})") for a in n.attribute}
        if n.op_type == "Constant" and (n.domain or "") == "":
            if "value" not in attrs:
                for key in ("value_float", "value_int", "value_floats", "value_ints"):
                    if key in attrs:
                        attrs["value"] = np.asarray(attrs[key],
                                                    dtype=np.float32 if "float" in key else np.int64)
                if "value" not in attrs:
                    raise ModelError(f"{where}: Constant node {name!r} has no value fxsim reads")
            consts[n.output[0]] = np.asarray(attrs["value"])
            continue
        raw.append(Node(name, n.op_type, n.domain or "", list(n.input), list(n.output), attrs))
    # execution order (Kahn), with a clear error for a tensor nobody produces
    available = set(consts) | {i.name for i in inputs} | {""}
    pending = list(raw)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.inputs)]
        if not ready:
            n = pending[0]
            produced = {o for m in pending for o in m.outputs}
            missing = [i for i in n.inputs if i not in available and i not in produced]
            if missing:
                raise ModelError(f"{where}: node {n.name!r} ({n.op}) reads tensor {missing[0]!r}, which no node, "
                                 "initializer or graph input provides")
            raise ModelError(f"{where}: the graph has a cycle through node {n.name!r} ({n.op})")
        for n in ready:
            ordered.append(n)
            available.update(n.outputs)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    for o in outputs:
        if o.name not in available:
            raise ModelError(f"{where}: graph output {o.name!r} is not produced by any node")
    return Graph(g.name or "model", ordered, consts, inputs, outputs, opsets, where, proto)
