"""Tables and reports for a model: the layer table (``info``), the per-layer run report (``run``), the
per-layer accumulator sweep (``sweep``) and golden vectors for layers inside the network (``export``)."""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from fxsim.bounds import data_bits, l1_bits, worst_case_bits
from fxsim.model.graph import ModelError
from fxsim._version import __version__
from fxsim.runtime.outputs import output_dir

__all__ = ["layer_table", "format_layer_table", "run_report", "sweep_model", "export_model", "onnxruntime_agreement"]

COMPUTE = ("conv", "gemm", "gap")


def _weights_kn(layer):
    """The layer's weights as a (K, N) code matrix (per group for grouped convolutions: the first group),
    less the weight zero point; None for layers without constant weights."""
    p = layer.params
    if layer.kind == "conv":
        w = p["w"]
        return w.reshape(w.shape[0], -1).T.astype(np.int64) - np.asarray(p["w_q"].zero_point, dtype=np.int64)
    if layer.kind == "gemm" and p.get("b") is not None:
        return p["b"].astype(np.int64) - np.asarray(p["b_q"].zero_point, dtype=np.int64)
    if layer.kind == "gap":
        return np.ones((int(p["hw"]), 1), dtype=np.int64)
    return None


def layer_bounds(layer):
    """(K, worst-case bits, data-independent bits from the weights, l1 bits) of a MAC layer."""
    dp = layer.datapath
    W = _weights_kn(layer)
    if W is None:
        return None
    K = W.shape[0]
    bias = layer.params.get("bias")
    br = (int(bias.min()), int(bias.max())) if bias is not None and bias.size else (0, 0)
    wc = worst_case_bits(dp.a, dp.b, K, a_zero_point=dp.a_zero_point, b_zero_point=dp.b_zero_point, bias_range=br)
    db = int(data_bits(W, dp.a, a_zero_point=dp.a_zero_point).max())
    l1 = int(l1_bits(W, dp.a, a_zero_point=dp.a_zero_point).max())
    return K, wc, db, l1


def _kind(layer):
    return layer.kind + (" (float)" if layer.float and layer.kind != "float" else "")


def layer_table(model) -> list:
    rows = []
    for layer in model.layers:
        row = {"name": layer.name, "op": layer.op, "kind": _kind(layer),
               "in_shapes": [list(s) for s in layer.in_shapes or []],
               "out_shapes": [list(s) for s in layer.out_shapes or []],
               "formats": layer.formats(), "macs": layer.macs}
        if layer.kind in COMPUTE:
            K, wc, db, l1 = layer_bounds(layer)
            row.update(K=K, worst_case_bits=wc, data_independent_bits=db, l1_bits=l1,
                       datapath=str(layer.datapath))
        rows.append(row)
    return rows


def format_layer_table(rows) -> str:
    lines = [f"{'layer':<24}{'op':<22}{'kind':<14}{'output shape':<18}{'MACs':>10}{'K':>6}{'worst':>7}{'data':>6}"
             "  formats"]
    for r in rows:
        shape = "x".join(str(d) for d in (r["out_shapes"][0] if r["out_shapes"] else []))
        extra = (f"{r['K']:>6}{r['worst_case_bits']:>7}{r['data_independent_bits']:>6}" if "K" in r else " " * 19)
        lines.append(f"{r['name'][:23]:<24}{r['op'][:21]:<22}{r['kind']:<14}{shape:<18}{r['macs']:>10}{extra}  "
                     f"{r['formats']}")
    total = sum(r["macs"] for r in rows)
    lines.append(f"{len(rows)} layers, {total} MACs; worst = bits any input needs (operand formats and K), "
                 "data = bits any input needs with these weights")
    return "\n".join(lines)


def run_report(model, feeds, reference=None) -> tuple:
    """Run ``model`` with records, and the default-hardware ``reference`` (int32, ONNX Runtime's arithmetic);
    returns (outputs, rows): per layer the overflow events, outputs differing from the reference, the
    largest difference in output codes, and the bits the accumulator needed."""
    out = model.run(feeds, record=True)
    ref = (reference or model.configure()).run(feeds, record=True)
    rows = []
    for name, rec in out.records.items():
        layer = rec.layer
        y = np.asarray(rec.outputs[0])
        r = np.asarray(ref.records[name].outputs[0])
        diff = np.abs(y.astype(np.float64) - r.astype(np.float64)) if y.shape == r.shape else None
        row = {"layer": name, "kind": _kind(layer),
               "outputs": int(y.size),
               "differ_from_int32": None if diff is None else int(np.count_nonzero(diff)),
               "max_abs_error": None if diff is None else float(diff.max() if diff.size else 0.0)}
        res = rec.result
        if res is not None:
            s = res.summary()
            row.update(overflow_events=s["overflow_events"], outputs_with_overflow=s["outputs_with_overflow"],
                       bits_needed=s["max_bits_needed"], accumulator=str(layer.datapath.accumulator))
        rows.append(row)
    return out, rows


def write_rows(rows, directory, stem):
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(os.path.join(directory, f"{stem}.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(directory, f"{stem}.json"), "w") as fh:
        json.dump(rows, fh, indent=2, default=str)


def onnxruntime_agreement(model_source, feeds, outputs) -> dict | None:
    """Elements of each output equal to ONNX Runtime's (None when onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError:
        return None
    import onnx
    proto = model_source if isinstance(model_source, onnx.ModelProto) else onnx.load(model_source)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds)))
    res = {}
    for k, v in got.items():
        ours = np.asarray(outputs[k])
        same = int(np.count_nonzero(ours == v)) if ours.shape == v.shape else 0
        res[k] = {"equal": same, "elements": int(v.size)}
    return res


def _sweep_one(model_bytes, feeds, name, b, overflow, ref):
    """One (layer, width) point of a model sweep in a worker process or on a Dask worker."""
    from fxsim.model.model import load_model
    return _sweep_point(load_model(model_bytes), feeds, name, b, overflow, ref)


def _sweep_point(base, feeds, name, b, overflow, ref):
    """The network with layer ``name`` alone narrowed to ``b`` bits, against the int32 outputs ``ref``."""
    row = {"layer": name, "acc_bits": b, "overflow": overflow}
    try:
        out = base.configure(layers={name: {"accumulator": f"int{b}", "overflow": overflow}}).run(feeds, record=True)
    except ModelError as exc:
        row["error"] = str(exc)
        return row
    eq = tot = 0
    top = []
    for k, v in ref.items():
        o = np.asarray(out[k])
        eq += int(np.count_nonzero(o == v))
        tot += int(np.size(v))
        if np.ndim(v) >= 2:
            top.append(float(np.mean(np.argmax(o, axis=-1) == np.argmax(v, axis=-1))))
    res = out.records[name].result
    row.update(share_equal=eq / max(tot, 1), top1_agree=min(top) if top else None,
               overflow_events=int(np.sum(res.overflow_count)))
    return row


def sweep_model(model, feeds, bits, *, overflow="saturate", workers=1, scheduler=None) -> dict:
    """Per MAC layer: the narrowest accumulator that is bit-exact on these inputs (the widest partial sum
    it held, from the int32 run), and for each narrower width in ``bits`` the network-level effect of
    narrowing that layer alone: the share of output elements equal to the int32 network's, and the top-1
    agreement (argmax over the last axis) of every output. The narrowed runs are independent: ``workers``
    local processes (spawned, as fxsim's layer sweeps), or a Dask ``scheduler``, run them."""
    base = model.configure()
    ref = base.run(feeds, record=True)
    ref_out = {k: np.asarray(v) for k, v in ref.items()}
    narrowest, rows, jobs = {}, [], []
    for name, rec in ref.records.items():
        if rec.result is None:
            continue
        need = int(rec.result.summary()["max_bits_needed"])
        narrowest[name] = need
        for b in bits:
            if b >= need:
                rows.append({"layer": name, "acc_bits": b, "overflow": overflow, "share_equal": 1.0,
                             "top1_agree": 1.0, "overflow_events": 0})
            else:
                rows.append(None)
                jobs.append((len(rows) - 1, name, b))
    if workers == 1 and not scheduler:
        for i, name, b in jobs:
            rows[i] = _sweep_point(base, feeds, name, b, overflow, ref_out)
        return {"rows": rows, "narrowest_exact": narrowest, "bits": list(bits)}
    data = model.graph.proto.SerializeToString()   # workers load the model themselves
    if scheduler:
        from distributed import Client
        with Client(scheduler) as client:
            shared = client.scatter((data, feeds, ref_out), broadcast=True)
            futs = [client.submit(_sweep_shared, shared, name, b, overflow, pure=False) for _, name, b in jobs]
            for (i, _, _), f in zip(jobs, futs):
                rows[i] = f.result()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        ctx = multiprocessing.get_context("spawn")   # Numba's threads must not be forked
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1, mp_context=ctx) as ex:
            futs = [(i, ex.submit(_sweep_one, data, feeds, name, b, overflow, ref_out)) for i, name, b in jobs]
            for i, f in futs:
                rows[i] = f.result()
    return {"rows": rows, "narrowest_exact": narrowest, "bits": list(bits)}


def _sweep_shared(shared, name, b, overflow):
    data, feeds, ref = shared
    return _sweep_one(data, feeds, name, b, overflow, ref)


def format_sweep(result) -> str:
    lines = [f"{'layer':<24}{'narrowest exact':>16}"]
    for k, v in result["narrowest_exact"].items():
        lines.append(f"{k[:23]:<24}{v:>16}")
    lines.append(f"\n{'layer':<24}{'bits':>5}{'equal %':>9}{'top-1 %':>9}{'ovf events':>12}")
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"{r['layer'][:23]:<24}{r['acc_bits']:>5}  {r['error'][:70]}")
            continue
        t1 = "" if r["top1_agree"] is None else f"{100 * r['top1_agree']:.1f}"
        lines.append(f"{r['layer'][:23]:<24}{r['acc_bits']:>5}{100 * r['share_equal']:>9.2f}{t1:>9}"
                     f"{r['overflow_events']:>12}")
    return "\n".join(lines)


def plot_sweep(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    layers = list(result["narrowest_exact"])
    for name in layers:
        rs = [r for r in result["rows"] if r["layer"] == name and "error" not in r]
        ax.plot([r["acc_bits"] for r in rs], [100 * r["share_equal"] for r in rs], marker="o", label=name)
    ax.set_xlabel("accumulator bits (this layer only, saturating)")
    ax.set_ylabel("network outputs equal to int32 (%)")
    ax.set_title("Per-layer accumulator narrowing")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ golden vectors
def _spec_tables(dp):
    """The [datapath] and [output] tables of a layer spec describing ``dp`` (see fxsim.workflows.spec)."""
    def plain(v):
        a = np.asarray(v)
        return a.tolist() if a.ndim else (float(a) if a.dtype.kind == "f" else int(a))
    d = {"a": str(dp.a), "b": str(dp.b), "a_zero_point": int(dp.a_zero_point), "b_zero_point": int(dp.b_zero_point),
         "bias_preload": bool(dp.bias_preload),
         "accumulator": {"format": str(dp.accumulator.fmt), "overflow": dp.accumulator.overflow.name.lower()},
         "order": {"kind": dp.order.kind}}
    if dp.order.kind == "chunked":       # lanes and combine apply to chunked orders only
        d["order"].update(lanes=int(dp.order.lanes), combine=dp.order.combine)
    if dp.order.level_bits is not None:
        d["order"]["level_bits"] = [int(v) for v in dp.order.level_bits]
    o = {} if dp.output.overflow is None else {"overflow": dp.output.overflow.name.lower()}
    if dp.output.bias_bits is not None:
        o["bias_bits"] = int(dp.output.bias_bits)
    if dp.output.fmt is not None:
        o["format"] = str(dp.output.fmt)
    rq = dp.output.requant
    if rq is not None:
        o["requant"] = {"kind": rq.kind, "multiplier": plain(rq.multiplier), "shift": plain(rq.shift),
                        "rounding": rq.rounding.name.lower(), "zero_point": int(rq.zero_point)}
        if rq.scale is not None:
            o["requant"]["scale"] = plain(np.asarray(rq.scale, dtype=np.float32).astype(np.float64))
    return d, o


def export_model(model, feeds, out_dir, *, layers="*", file_format="hex", force=False) -> dict:
    """Golden vectors for every selected MAC layer with the inputs it really receives inside the network:
    one sub-directory per layer, each a golden-vector directory exactly as ``fxsim export`` writes it
    (``fxsim.rtl.export.golden_contents`` with the layer's inputs inside the network as its data, which the
    layer's spec names as the directory's own a/b/bias files), under one manifest.json of the kind
    ``model-golden-vectors`` listing the layers' directories and every file in them. Written atomically
    through ``fxsim.runtime.outputs.output_dir``: ``force`` replaces only a previous model export."""
    import fnmatch
    from fxsim.rtl.export import _EXT, export_options, golden_contents, manifest_bytes, write_contents
    from fxsim.workflows.run import run_layer
    from fxsim.workflows.spec import spec_from_dict
    out = model.run(feeds, record=True)
    chosen = [r for n, r in out.records.items() if r.result is not None and fnmatch.fnmatchcase(n, layers)]
    for r in chosen:
        if r.layer.params.get("split_zero_points"):
            raise ModelError(f"layer {r.layer.name!r} has several weight zero points (one datapath per zero "
                             "point); golden vectors are written for layers with one")
    if not chosen:
        names = [n for n, r in out.records.items() if r.result is not None]
        raise ModelError(f"--layers {layers!r} selects no MAC layer; the MAC layers are {', '.join(names)}")
    with output_dir(out_dir, "model-golden-vectors", force=force, manifest_files=False) as tmp:
        index, every = {}, []
        ext = _EXT.get(file_format, file_format)
        for rec in chosen:
            layer, dp = rec.layer, rec.layer.datapath
            p = layer.params
            x = np.asarray(rec.inputs[0]).astype(np.int64)
            dtab, otab = _spec_tables(dp)
            bias = p.get("bias")
            fold = dp.a_zero_point == 0 and int(np.asarray((p.get("x_q") or p.get("a_q")).zero_point).ravel()[0]) != 0
            if layer.kind == "conv":
                t, left, b, r = p["pads"]
                zp = int(np.asarray(p["x_q"].zero_point).ravel()[0])
                x = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=zp)
                w = p["w"]
                if w.shape[2] != w.shape[3] or len(set(p["strides"])) != 1 or len(set(p["dilations"])) != 1:
                    raise ModelError(f"layer {layer.name!r}: golden vectors are written for square kernels, strides "
                                     "and dilations")
                if fold:
                    adj = -zp * (w.astype(np.int64) - dp.b_zero_point).reshape(w.shape[0], -1).sum(axis=1)
                    bias = adj if bias is None else bias + adj
                raw = {"layer": {"op": "conv2d", "name": layer.name},
                       "shape": {"batch": x.shape[0], "in_channels": x.shape[1], "height": x.shape[2],
                                 "width": x.shape[3], "out_channels": w.shape[0], "kernel": w.shape[2],
                                 "stride": p["strides"][0], "padding": 0, "dilation": p["dilations"][0],
                                 "groups": p["group"]}, "datapath": dtab, "output": otab}
                A, B = x, w
            else:
                if layer.kind == "gap":
                    A = x.reshape(x.shape[0] * x.shape[1], -1)
                    B = np.ones((A.shape[1], 1), dtype=np.int64)
                else:
                    A = x.reshape(-1, x.shape[-1])
                    B = p["b"] if p.get("b") is not None else np.asarray(rec.inputs[1]).astype(np.int64)
                if fold:
                    zp = int(np.asarray((p.get("x_q") or p.get("a_q")).zero_point).ravel()[0])
                    adj = -zp * (B.astype(np.int64) - dp.b_zero_point).sum(axis=0)
                    bias = adj if bias is None else bias + adj
                raw = {"layer": {"op": "gemm", "name": layer.name},
                       "shape": {"M": A.shape[0], "K": A.shape[1], "N": B.shape[1]}, "datapath": dtab,
                       "output": otab}
            # the inputs the layer receives inside the network are the directory's own input files
            raw["data"] = {"a": f"a.{ext}", "b": f"b.{ext}"}
            if bias is not None:
                raw["data"]["bias"] = f"bias.{ext}"
            raw = json.loads(json.dumps(raw, default=int))
            spec = spec_from_dict(raw)
            export_options(spec, file_format)
            data = (np.asarray(A, dtype=np.int64), np.asarray(B, dtype=np.int64),
                    None if bias is None else np.asarray(bias, dtype=np.int64))
            contents, manifest = golden_contents(spec, file_format=file_format, data=data)
            result, _ = run_layer(spec, data=data)
            inside = np.asarray(rec.outputs[0]).astype(np.int64).ravel()
            if dp.output.fmt is not None and not np.array_equal(np.asarray(result.codes).ravel(), inside):
                raise ModelError(f"layer {layer.name!r}: the exported layer does not reproduce its output inside "
                                 "the network; please report this")
            sub = "".join(c if c.isalnum() or c in "-_." else "_" for c in layer.name).lstrip(".") or "layer"
            while sub in index.values():
                sub += "_"
            d = os.path.join(tmp, sub)
            os.makedirs(d)
            write_contents(d, contents, manifest)
            every += [f"{sub}/{f}" for f in contents] + [f"{sub}/manifest.json"]
            index[layer.name] = sub
        top = {"fxsim_output": "model-golden-vectors", "fxsim_version": __version__, "model": str(model.graph.source),
               "layers": index, "files": sorted(every),
               "note": "one golden-vector directory per layer (fxsim verify checks each); conv inputs are stored "
                       "padded with their zero point"}
        with open(os.path.join(tmp, "manifest.json"), "wb") as fh:
            fh.write(manifest_bytes(top))
    return top
