"""``Model``: a lowered network with its hardware options; ``run`` takes and returns dicts like
onnxruntime.InferenceSession.run."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fxsim.model.execute import run_layer
from fxsim.model.graph import ModelError, read_graph
from fxsim.model.hardware import Hardware
from fxsim.model.lower import lower

__all__ = ["Model", "load_model", "LayerRecord"]


@dataclass
class LayerRecord:
    """What one layer did in a recorded run: its inputs and outputs, and for a MAC layer the engine's
    ``GemmResult`` (accumulators, overflow counts, bits needed, traces)."""
    layer: object
    inputs: list
    outputs: list
    result: object = None


class RunResult(dict):
    """Graph outputs by name (a dict), plus ``records``: {layer name: LayerRecord} of a recorded run."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.records = {}


class Model:
    """A quantized network ready to simulate. ``layers``: every layer in execution order."""

    def __init__(self, graph, layers, hardware: Hardware):
        self.graph = graph
        self._layers = layers
        self.hardware = hardware
        self._shaped = False
        names = {layer.name for layer in layers}
        compute = {layer.name for layer in layers if layer.kind in ("conv", "gemm", "gap")}
        import fnmatch
        for pattern, _ in hardware.layers:
            hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise ModelError(f"{hardware.source}: layers.\"{pattern}\" matches no layer; the layers are "
                                 f"{', '.join(layer.name for layer in layers)}")
            if not any(h in compute for h in hits):
                raise ModelError(f"{hardware.source}: layers.\"{pattern}\" matches only layers without a "
                                 f"datapath ({', '.join(sorted(hits))}); hardware options apply to "
                                 f"{', '.join(sorted(compute))}")

    # ------------------------------------------------------------------------------------------ inputs
    @property
    def input_names(self):
        return [i.name for i in self.graph.inputs]

    @property
    def output_names(self):
        return [o.name for o in self.graph.outputs]

    def configure(self, hardware=None, **options) -> "Model":
        """The same network on other hardware (see fxsim.model.hardware)."""
        return Model(self.graph, self._layers, Hardware.make(hardware, **options))

    def _feeds(self, feeds):
        ins = self.graph.inputs
        if not isinstance(feeds, dict):
            if len(ins) != 1:
                raise ModelError(f"the model has {len(ins)} inputs ({', '.join(self.input_names)}); pass a dict "
                                 "{name: array}")
            feeds = {ins[0].name: feeds}
        unknown = [k for k in feeds if k not in self.input_names]
        if unknown:
            raise ModelError(f"input {unknown[0]!r} is not an input of the model; its inputs are "
                             f"{', '.join(self.input_names)}")
        out = {}
        for info in ins:
            if info.name not in feeds:
                raise ModelError(f"input {info.name!r} is missing from the feeds (the model's inputs are "
                                 f"{', '.join(self.input_names)})")
            x = np.asarray(feeds[info.name])
            if info.dtype is not None and x.dtype != info.dtype:
                raise ModelError(f"input {info.name!r} must be a {info.dtype} array, got {x.dtype}")
            if info.shape is not None:
                if x.ndim != len(info.shape) or any(isinstance(d, int) and d > 0 and d != s
                                                    for d, s in zip(info.shape, x.shape)):
                    raise ModelError(f"input {info.name!r} must have shape {tuple(info.shape)}, got {x.shape}")
            out[info.name] = x
        return out

    # -------------------------------------------------------------------------------------------- run
    def run(self, feeds, record=False, *, output_names=None, trace=None):
        """Run the network. ``feeds``: {input name: array} (or one array for a single-input model).
        Returns {output name: array}; with ``record=True`` the returned dict also has ``.records``
        ({layer name: LayerRecord}) and every MAC layer keeps its per-output statistics.
        ``trace``: {layer name: trace argument of gemm/conv2d} for per-cycle register traces."""
        env = dict(self.graph.consts)
        env.update(self._feeds(feeds))
        result = RunResult()
        trace = trace or {}
        for layer in self._layers:
            try:
                ins = [env[t] for t in layer.inputs]
            except KeyError as exc:
                raise ModelError(f"layer {layer.name!r} reads {exc.args[0]!r}, which was not computed") from None
            opts = self.hardware.for_layer(layer.name) if layer.kind in ("conv", "gemm", "gap") else {}
            try:
                outs, res = run_layer(layer, ins, opts, record=record, trace=trace.get(layer.name))
            except ModelError:
                raise
            except (ValueError, TypeError, OverflowError) as exc:
                raise ModelError(f"layer {layer.name!r} ({layer.op}): {exc}") from None
            layer.in_shapes = [tuple(np.shape(x)) for x in ins]
            layer.out_shapes = [tuple(np.shape(y)) for y in outs]
            for name, y in zip(layer.outputs, outs):
                env[name] = y
            if record:
                result.records[layer.name] = LayerRecord(layer, ins, outs, res)
        self._shaped = True
        names = output_names or self.output_names
        for n in names:
            if n not in env:
                raise ModelError(f"{n!r} is not a tensor of the model")
            result[n] = env[n]
        return result

    # ------------------------------------------------------------------------------------------ layers
    @property
    def layers(self):
        """Every layer in execution order with its datapath, shapes, MACs and formats (the first access runs
        the model once on zero inputs to learn the shapes when it has not run yet)."""
        if not self._shaped:
            self.run(self.zero_feeds())
        return list(self._layers)

    def zero_feeds(self):
        feeds = {}
        for info in self.graph.inputs:
            if info.shape is None:
                raise ModelError(f"input {info.name!r} has no shape in the model; run it once to learn the shapes")
            shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in info.shape)
            feeds[info.name] = np.zeros(shape, dtype=info.dtype or np.float32)
        return feeds

    def __repr__(self):
        return f"<fxsim Model {self.graph.name!r}: {len(self._layers)} layers, inputs {self.input_names}>"


def load_model(model, hardware=None, *, plan="onnxruntime", **options) -> Model:
    """Import an ONNX model (a path, bytes or onnx.ModelProto) for bit-exact simulation. ``hardware``:
    a Hardware, a dict or a TOML file; keyword options set global hardware options (accumulator,
    overflow, order, lanes, zero_points, requant, multiplier_bits, requant_rounding, bias). ``plan``:
    "onnxruntime" (default: the layers ONNX Runtime's CPU provider fuses, every output equal to its own)
    or "integer" (every integer Q/DQ pattern lowered to its integer op, as an accelerator runs it)."""
    graph = read_graph(model)
    return Model(graph, lower(graph, plan), Hardware.make(hardware, **options))
