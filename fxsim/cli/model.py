"""``fxsim model info|run|sweep|export``: whole networks from the command line."""
from __future__ import annotations

import json
import os

import numpy as np
from fxsim.model import load_model
from fxsim.model.graph import ModelError
from fxsim.runtime.outputs import output_dir

__all__ = ["add_parser", "cmd_model"]


def add_parser(sub, bits_range):
    m = sub.add_parser("model", help="import an ONNX model and simulate it layer by layer")
    ms = m.add_subparsers(dest="model_command", required=True)

    def common(p, needs_input=True):
        p.add_argument("model", help="an ONNX file (QOperator or QDQ)")
        if needs_input:
            p.add_argument("--input", required=True, action="append",
                           help="x.npy (single-input model), NAME=x.npy, or an .npz of {input name: array}")
        p.add_argument("--hw", default=None, help="hardware TOML file (accumulators, zero points, requantization)")
        p.add_argument("--plan", default="onnxruntime", choices=["onnxruntime", "integer"],
                       help="which QDQ patterns become integer layers: ONNX Runtime's (default) or every one")

    i = ms.add_parser("info", help="the layer table")
    common(i, needs_input=False)
    i.add_argument("--input", action="append", default=None, help="inputs to learn shapes from (default: zeros)")
    r = ms.add_parser("run", help="run the network and report per layer")
    common(r)
    r.add_argument("--out", required=True)
    r.add_argument("--force", action="store_true")
    s = ms.add_parser("sweep", help="per-layer narrowest accumulator and the network-level effect of narrowing")
    common(s)
    s.add_argument("--acc-bits", type=bits_range, default=list(range(12, 33)))
    s.add_argument("--overflow", default="saturate", choices=["saturate", "wrap"])
    s.add_argument("--workers", type=int, default=1, help="local processes (0: one per core)")
    s.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port)")
    s.add_argument("--out", default=None)
    s.add_argument("--force", action="store_true")
    e = ms.add_parser("export", help="golden vectors for layers inside the network")
    common(e)
    e.add_argument("--out", required=True)
    e.add_argument("--layers", default="*", help="fnmatch pattern on layer names")
    e.add_argument("--format", default="hex", choices=["hex", "coe", "mif", "npy", "bin"])
    e.add_argument("--force", action="store_true")
    return m


def _feeds(model, items):
    feeds = {}
    for item in items or []:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        if not os.path.exists(path):
            raise ModelError(f"--input {item!r}: file {path!r} does not exist")
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ModelError(f"--input {item!r}: not a NumPy .npy/.npz file ({exc})") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            feeds.update({k: data[k] for k in data.files})
        elif name:
            feeds[name] = data
        else:
            if len(model.input_names) != 1:
                raise ModelError(f"--input {item!r}: the model has inputs {', '.join(model.input_names)}; "
                                 "give NAME=file.npy for each")
            feeds[model.input_names[0]] = data
    return feeds if items else model.zero_feeds()


def cmd_model(args) -> int:
    from fxsim.model.report import (export_model, format_layer_table, format_sweep, layer_table, onnxruntime_agreement,
                         plot_sweep, run_report, sweep_model, write_rows)
    model = load_model(args.model, hardware=args.hw, plan=args.plan)
    feeds = _feeds(model, args.input)
    c = args.model_command
    if c == "info":
        model.run(feeds)
        print(format_layer_table(layer_table(model)))
        return 0
    if c == "run":
        with output_dir(args.out, "model-run", force=args.force) as tmp:
            outputs, rows = run_report(model, feeds)
            np.savez(os.path.join(tmp, "outputs.npz"), **dict(outputs))
            write_rows(rows, tmp, "layers")
            agree = onnxruntime_agreement(args.model, feeds, model.configure().run(feeds))
            with open(os.path.join(tmp, "summary.json"), "w") as fh:
                json.dump({"onnxruntime_agreement_default_lowering": agree, "hardware": args.hw}, fh, indent=2)
        print(f"{'layer':<24}{'kind':<16}{'outputs':>9}{'differ':>8}{'max err':>9}{'ovf events':>12}{'bits':>6}")
        for r in rows:
            print(f"{r['layer'][:23]:<24}{r['kind']:<16}{r['outputs']:>9}{r['differ_from_int32']!s:>8}"
                  f"{r['max_abs_error']!s:>9}{r.get('overflow_events', ''):>12}{r.get('bits_needed', '')!s:>6}")
        if agree is None:
            print("onnxruntime is not installed: no comparison with it")
        else:
            for k, v in agree.items():
                print(f"default lowering vs ONNX Runtime, output {k!r}: {v['equal']} of {v['elements']} elements equal")
        print(f"wrote outputs.npz, layers.csv, layers.json, summary.json to {args.out}")
        return 0
    if c == "sweep":
        out = output_dir(args.out, "model-sweep", force=args.force) if args.out else None   # checked before the work
        res = sweep_model(model, feeds, args.acc_bits, overflow=args.overflow, workers=args.workers or None,
                          scheduler=args.scheduler)
        print(format_sweep(res))
        if out is not None:
            with out as tmp:
                write_rows(res["rows"], tmp, "sweep")
                with open(os.path.join(tmp, "narrowest.json"), "w") as fh:
                    json.dump(res["narrowest_exact"], fh, indent=2)
                plot_sweep(res, os.path.join(tmp, "sweep.png"))
            print(f"wrote sweep.csv, sweep.json, narrowest.json, sweep.png to {args.out}")
        return 0
    top = export_model(model, feeds, args.out, layers=args.layers, file_format=args.format, force=args.force)
    print(f"wrote golden vectors for {len(top['layers'])} layer(s) under {os.path.join(args.out, 'manifest.json')}")
    return 0
