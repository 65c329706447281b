"""Build fxsim_core for a golden directory and run test_fxsim_core.py with cocotb's runner.

    python examples/cocotb/run.py GOLDEN_DIR [icarus|verilator]     (`fxsim examples examples` writes it out)

Exit status 0 when every word matched. (Verilator: cocotb 2 needs 5.036 or later.)
"""
import os
import sys

from cocotb_tools.runner import get_results, get_runner

from fxsim.rtl.cocotb import RTL_SOURCES, rtl_parameters

HERE = os.path.dirname(os.path.abspath(__file__))


def run(golden, simulator="icarus", build_dir=None, build=True):
    """Build (unless ``build`` is False: reuse ``build_dir``, same parameters) and run the test; returns
    (tests run, tests failed)."""
    golden = os.path.abspath(golden)
    build_dir = build_dir or os.path.join(golden + "-cocotb", simulator)
    runner = get_runner(simulator)
    extra = (["-Wno-fatal", "-Wno-lint", "-Wno-style", "--unroll-count", "1", "-CFLAGS", "-O0"]
             if simulator == "verilator" else [])
    if HERE not in sys.path:     # the runner hands its sys.path to the simulator's Python as PYTHONPATH
        sys.path.insert(0, HERE)
    if build:
        runner.build(sources=RTL_SOURCES, includes=[os.path.dirname(RTL_SOURCES[0])], hdl_toplevel="fxsim_core",
                     parameters=rtl_parameters(golden), build_dir=build_dir, build_args=extra, always=True)
    xml = runner.test(hdl_toplevel="fxsim_core", hdl_toplevel_lang="verilog", test_module="test_fxsim_core",
                      test_dir=build_dir, build_dir=build_dir, extra_env={"FXSIM_GOLDEN": golden},
                      results_xml=os.path.join(os.path.abspath(build_dir), "results.xml"))
    return get_results(xml)


if __name__ == "__main__":
    total, failed = run(*sys.argv[1:3])
    sys.exit(1 if failed or not total else 0)
