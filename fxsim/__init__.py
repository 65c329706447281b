"""fxsim: a bit-accurate numerics simulator for neural-network accelerator datapaths.

What fxsim computes is, bit for bit, what the hardware datapath computes.

    import numpy as np, fxsim
    dp = fxsim.Datapath(a="int8", b="int8", accumulator=fxsim.Accumulator("int16", overflow="saturate"))
    r = fxsim.gemm(A, B, dp, trace=(0, 0))     # r.values, r.acc, r.overflow_count, r.traces[(0, 0)]
"""
from fxsim._version import __version__  # noqa: E402,F401


def _mount_kernels():
    """The Numba kernels live in the repository's top-level ``kernels/`` folder and are installed as the private
    package ``fxsim._kernels`` (setup.cfg's package_dir). From a source checkout (an editable install or
    PYTHONPATH) that folder is mounted under the same name, always the checkout's own copy."""
    import importlib.util
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(here), "kernels", "__init__.py")
    if "fxsim._kernels" in sys.modules or os.path.isdir(os.path.join(here, "_kernels")) or not os.path.isfile(src):
        return
    spec = importlib.util.spec_from_file_location("fxsim._kernels", src,
                                                  submodule_search_locations=[os.path.dirname(src)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["fxsim._kernels"] = module
    spec.loader.exec_module(module)


_mount_kernels()

from fxsim.modes import Overflow, Rounding  # noqa: F401
from fxsim.formats import Fixed, Float, Int, parse_format  # noqa: F401
from fxsim.quantize import quantize, quantize_to_codes  # noqa: F401
from fxsim.datapath import (Accumulator, Datapath, FloatAccumulator, FloatProduct, IntAccumulator,  # noqa: F401
                            IntProduct, Order, OutputStage, Product, Requant)
from fxsim.result import GemmResult  # noqa: F401
from fxsim.ops.gemm import gemm  # noqa: F401
from fxsim.ops.conv import conv2d  # noqa: F401
from fxsim.engines.floating import float_gemm  # noqa: F401
from fxsim.bounds import data_bits, l1_bits, symmetric_bits, worst_case_bits  # noqa: F401
from fxsim.workflows.spec import SpecError, load_spec, parse_spec, run_layer  # noqa: F401
from fxsim.workflows.sweep import run_sweep, sweep_configs  # noqa: F401
from fxsim.rtl.export import export_layer, verify_dir  # noqa: F401
from fxsim.training.recipes import RECIPES, LogQuantizer, Recipe, TensorQuantizer, get_recipe  # noqa: F401
from fxsim.model import Model, ModelError, load_model  # noqa: F401  (onnx is imported on use)
from fxsim.engines.block import (BlockArray, BlockFormat, MXFP4, MXFP6_E2M3, MXFP6_E3M2, MXFP8_E4M3, MXFP8_E5M2,  # noqa: F401
                 MXINT8, NVFP4, bfp, block_quantize, mx_gemm)

__all__ = ["Overflow", "Rounding", "Fixed", "Float", "Int", "parse_format", "quantize", "quantize_to_codes",
           "Accumulator", "IntAccumulator", "FloatAccumulator", "Product", "IntProduct", "FloatProduct", "Datapath", "Order", "OutputStage", "Requant", "GemmResult", "gemm", "conv2d",
           "float_gemm", "BlockArray", "BlockFormat", "MXFP4", "MXFP6_E2M3", "MXFP6_E3M2", "MXFP8_E4M3",
           "MXFP8_E5M2", "MXINT8", "NVFP4", "bfp", "block_quantize", "mx_gemm", "data_bits", "l1_bits",
           "symmetric_bits", "worst_case_bits", "SpecError", "load_spec", "parse_spec", "run_layer", "run_sweep",
           "sweep_configs", "export_layer", "verify_dir", "RECIPES", "LogQuantizer", "Recipe", "TensorQuantizer",
           "get_recipe", "load_model", "Model", "ModelError"]
# fxsim.training.layers (layers) and fxsim.training.demo (scikit-learn data, plots) are imported on use.
