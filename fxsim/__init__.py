"""fxsim: a bit-accurate numerics simulator for neural-network accelerator datapaths.

What fxsim computes is, bit for bit, what the hardware datapath computes.

    import numpy as np, fxsim
    dp = fxsim.Datapath(a="int8", b="int8", accumulator=fxsim.Accumulator("int16", overflow="saturate"))
    r = fxsim.gemm(A, B, dp, trace=(0, 0))     # r.values, r.acc, r.overflow_count, r.traces[(0, 0)]
"""
__version__ = "0.1.0"

from .modes import Overflow, Rounding  # noqa: F401
from .formats import Fixed, Float, Int, parse_format  # noqa: F401
from .quantize import quantize, quantize_to_codes  # noqa: F401
from .datapath import (Accumulator, Datapath, FloatAccumulator, FloatProduct, IntAccumulator,  # noqa: F401
                       IntProduct, Order, OutputStage, Product, Requant)
from .result import GemmResult  # noqa: F401
from .ops.gemm import gemm  # noqa: F401
from .ops.conv import conv2d  # noqa: F401
from .float_engine import float_gemm  # noqa: F401
from .bounds import data_bits, l1_bits, symmetric_bits, worst_case_bits  # noqa: F401
from .spec import SpecError, load_spec, parse_spec, run_layer  # noqa: F401
from .sweep import run_sweep, sweep_configs  # noqa: F401
from .export import export_layer, verify_dir  # noqa: F401
from .recipes import RECIPES, LogQuantizer, Recipe, TensorQuantizer, get_recipe  # noqa: F401
from .model import Model, ModelError, load_model  # noqa: F401  (onnx is imported on use)
from .mx import (BlockArray, BlockFormat, MXFP4, MXFP6_E2M3, MXFP6_E3M2, MXFP8_E4M3, MXFP8_E5M2,  # noqa: F401
                 MXINT8, NVFP4, bfp, block_quantize, mx_gemm)

__all__ = ["Overflow", "Rounding", "Fixed", "Float", "Int", "parse_format", "quantize", "quantize_to_codes",
           "Accumulator", "IntAccumulator", "FloatAccumulator", "Product", "IntProduct", "FloatProduct", "Datapath", "Order", "OutputStage", "Requant", "GemmResult", "gemm", "conv2d",
           "float_gemm", "BlockArray", "BlockFormat", "MXFP4", "MXFP6_E2M3", "MXFP6_E3M2", "MXFP8_E4M3",
           "MXFP8_E5M2", "MXINT8", "NVFP4", "bfp", "block_quantize", "mx_gemm", "data_bits", "l1_bits",
           "symmetric_bits", "worst_case_bits", "SpecError", "load_spec", "parse_spec", "run_layer", "run_sweep",
           "sweep_configs", "export_layer", "verify_dir", "RECIPES", "LogQuantizer", "Recipe", "TensorQuantizer",
           "get_recipe", "load_model", "Model", "ModelError"]
# fxsim.nn (layers) and fxsim.train_demo (scikit-learn data, plots) are imported on use.
