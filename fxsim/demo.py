"""The main job, on data shipped with fxsim: a layer simulation, an accumulator sweep with its plot, a
golden-vector export with a per-cycle trace, and (where available) the low-precision training demo."""
from __future__ import annotations

import importlib.util
import json
import os
import time

DEMO_SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits_fc.toml")


def run_demo(out_dir="fxsim-demo", *, force=False, quick=False) -> dict:
    from .cli import summarize
    from .export import atomic_dir, export_layer
    from .spec import load_spec, make_data, run_layer
    from .sweep import format_table, run_sweep, sweep_configs, write_sweep
    t0 = time.time()
    spec = load_spec(DEMO_SPEC)
    out_dir = os.path.abspath(out_dir)
    report = {}
    with atomic_dir(out_dir, force) as tmp:
        print(f"[1/4] Simulating the demo layer ({DEMO_SPEC})")
        print(f"      {spec.datapath}")
        data = make_data(spec)
        result, (A, B, bias) = run_layer(spec, data=data)
        summary = summarize(result, A, B, bias, spec)
        for k, v in summary.items():
            print(f"      {k}: {v}")
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
        if importlib.util.find_spec("fxsim.train_demo") is not None:
            print("[4/4] Training a small CNN on 8x8 digits in float64 and low precision")
            from .train_demo import run_training_demo
            report["training"] = run_training_demo(os.path.join(tmp, "training"), quick=quick)
        else:
            print("[4/4] Training demo: not part of this build")
        report["seconds"] = round(time.time() - t0, 1)
        # paths written while building point into the temporary directory: name their final place
        text = json.dumps(report, indent=2, default=str).replace(tmp, out_dir)
        report = json.loads(text)
        with open(os.path.join(tmp, "report.json"), "w") as fh:
            fh.write(text)
    b = report["sweep"]["bounds"]
    print(f"\nThe layer's int16 saturating accumulator saturated {summary['overflow_events']} time(s) in "
          f"{summary['outputs_with_overflow']} output(s); the narrowest bit-exact accumulator on this data is "
          f"{report['sweep']['narrowest_exact']}, against {b['data_dependent_bits']} bits guaranteed for any input "
          f"(data-dependent bound) and {b['worst_case_bits']} bits for any weights (worst case).")
    print(f"Done in {report['seconds']} s. Files in {out_dir}:")
    for root, _, files in sorted(os.walk(out_dir)):
        for f in sorted(files):
            print(f"  {os.path.relpath(os.path.join(root, f), os.path.dirname(out_dir))}")
    print(f"Plot: {os.path.join(out_dir, 'sweep.png')}; RTL check: fxsim testbench {os.path.join(out_dir, 'golden')} --run")
    return report
