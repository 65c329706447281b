"""fxsim: a bit-accurate numerics simulator for neural-network accelerator datapaths."""
__version__ = "0.1.0"

from .modes import Overflow, Rounding  # noqa: F401
from .formats import Fixed, Float, Int, parse_format  # noqa: F401
