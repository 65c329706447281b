"""The main job, on data shipped with fxsim: a layer simulation, an accumulator sweep with its plot, a
golden-vector export with a per-cycle trace, and (where available) the low-precision training demo."""
from __future__ import annotations

import importlib.util
import json
import os
import time
from fxsim.runtime.outputs import output_dir
from fxsim.training.demo import run_training_demo

DEMO_SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "digits_fc.toml")


def run_demo(out_dir="fxsim-demo", *, force=False, quick=False) -> dict:
    from fxsim.workflows.metrics import show, summarize
    from fxsim.rtl.export import export_layer
    from fxsim.workflows.data import make_data
    from fxsim.workflows.run import run_layer
    from fxsim.workflows.spec import load_spec
    from fxsim.workflows.sweep import format_table, json_safe, run_sweep, sweep_configs, write_sweep
    t0 = time.time()
    spec = load_spec(DEMO_SPEC)
    out_dir = os.path.abspath(out_dir)
    report = {}
    with output_dir(out_dir, "demo", force=force) as tmp:
        print(f"[1/4] Simulating the demo layer ({DEMO_SPEC})")
        print(f"      {spec.datapath}")
        data = make_data(spec)
        result, (A, B, bias) = run_layer(spec, data=data)
        summary = summarize(result, A, B, bias, spec)
        for k, v in summary.items():
            if v is not None:
                print(f"      {k}: {show(v, k)}")
        report["layer"] = summary
        print("[2/4] Sweeping accumulator widths 12..20 bits (saturate, wrap; sequential, chunked)")
        configs = sweep_configs(range(12, 21), ("saturate", "wrap"), ("sequential",) if quick else ("sequential", "chunked"))
        sw = run_sweep(spec, configs, workers=1 if quick else None)
        print(format_table(sw))
        write_sweep(sw, tmp)
        report["sweep"] = {"narrowest_exact": sw["narrowest_exact"], "bounds": sw["bounds"]}
        import numpy as np
        ti, tj = (int(v) for v in np.unravel_index(int(np.argmax(result.overflow_count)), result.overflow_count.shape))
        print(f"[3/4] Exporting golden vectors ($readmemh hex) with the per-cycle trace of output ({ti}, {tj}), "
              f"the one that overflows most")
        manifest = export_layer(spec, os.path.join(tmp, "golden"), file_format="hex", traces=[(ti, tj)])
        report["golden_files"] = sorted(e["file"] for e in manifest["files"].values())
        if importlib.util.find_spec("fxsim.training.demo") is not None:
            print("[4/4] Training a small CNN on 8x8 digits in float64 and low precision")
            report["training"] = run_training_demo(os.path.join(tmp, "training"), quick=quick)
        else:
            print("[4/4] Training demo: not part of this build")
        if importlib.util.find_spec("onnx") is not None:
            report["model"] = run_model_demo(tmp)
        report["seconds"] = round(time.time() - t0, 1)
        # paths written while building point into the temporary directory: name their final place
        text = json.dumps(json_safe(report), indent=2, default=str, allow_nan=False).replace(tmp, out_dir)
        report = json.loads(text)
        with open(os.path.join(tmp, "report.json"), "w") as fh:
            fh.write(text)
    b = report["sweep"]["bounds"]
    print(f"\nThe layer's int16 saturating accumulator saturated {summary['acc_overflow_events']} time(s) in "
          f"{summary['acc_outputs_with_overflow']} output(s); the narrowest bit-exact accumulator on this data is "
          f"{'; '.join(f'{k}: {v} bits' for k, v in report['sweep']['narrowest_exact'].items()) or 'none'}, against {b['data_dependent_bits']} bits guaranteed for any input "
          f"(data-dependent bound) and {b['worst_case_bits']} bits for any weights (worst case).")
    print(f"Done in {report['seconds']} s. Files in {out_dir}:")
    for root, _, files in sorted(os.walk(out_dir)):
        for f in sorted(files):
            print(f"  {os.path.relpath(os.path.join(root, f), os.path.dirname(out_dir))}")
    print(f"Plot: {os.path.join(out_dir, 'sweep.png')}; RTL check: fxsim testbench {os.path.join(out_dir, 'golden')} --run")
    return report


def run_model_demo(out_dir) -> dict:
    """The shipped quantized digits CNN (fxsim/data/digits_cnn_qdq.onnx, built by make_model_demo.py) end
    to end: agreement with ONNX Runtime, each layer's narrowest bit-exact accumulator, golden vectors for
    the convolution as it runs inside the network."""
    import numpy as np
    from fxsim.model import load_model
    from fxsim.model.report import export_model, onnxruntime_agreement
    data = os.path.dirname(DEMO_SPEC)
    path = os.path.join(data, "digits_cnn_qdq.onnx")
    z = np.load(os.path.join(data, "digits_test.npz"))
    print(f"[model] The digits CNN quantized by ONNX Runtime (QDQ int8): {path}")
    m = load_model(path)
    out = m.run({"x": z["x"]}, record=True)
    acc = float(np.mean(np.argmax(out["logits"], axis=1) == z["labels"]))
    agree = onnxruntime_agreement(path, {"x": z["x"]}, out)
    if agree is None:
        print("        onnxruntime is not installed: no comparison")
    else:
        a = agree["logits"]
        print(f"        {a['equal']} of {a['elements']} logits equal to ONNX Runtime's; test accuracy {acc:.3f}")
    narrow = {n: int(r.result.summary()["max_bits_needed"]) for n, r in out.records.items() if r.result is not None}
    print("        narrowest bit-exact accumulator per layer on these 64 images: "
          + ", ".join(f"{k} {v} bits" for k, v in narrow.items()))
    export_model(m, {"x": z["x"][:2]}, os.path.join(out_dir, "model_golden"), layers="conv")
    print("        golden vectors of layer 'conv' inside the network: model_golden/ (fxsim verify checks them)")
    qonnx = load_model(os.path.join(data, "digits_cnn_qonnx.onnx"))
    qacc = float(np.mean(np.argmax(qonnx.run({"x": z["x"]})["logits"], axis=1) == z["labels"]))
    print(f"        the QONNX variant (8-bit power-of-two IntQuant): test accuracy {qacc:.3f}")
    return {"onnxruntime_agreement": agree, "accuracy": acc, "narrowest_bits": narrow, "qonnx_accuracy": qacc}
