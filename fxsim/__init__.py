"""fxsim: a bit-accurate numerics simulator for neural-network accelerator datapaths."""
__version__ = "0.1.0"

from .modes import Overflow, Rounding  # noqa: F401
from .formats import Fixed, Int, INT4, INT8, UINT4, UINT8  # noqa: F401
