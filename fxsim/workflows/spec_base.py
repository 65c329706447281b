"""What every module of a layer spec shares: its errors, the parsed spec, and where a key is written."""
from __future__ import annotations

import re
from dataclasses import dataclass

from fxsim.datapath import Datapath
from fxsim.errors import BadFile, InvalidArgument

__all__ = ["SpecError", "SpecFileError", "LayerSpec", "SpecText"]


class SpecError(InvalidArgument):
    """A layer spec that cannot be used; the message names the key, value, allowed values and line."""


class SpecFileError(SpecError, BadFile):
    """A spec or data file that cannot be read (missing, not a regular file, too large, not UTF-8, not
    NumPy): both a ``SpecError`` (a ``ValueError``) and a ``BadFile`` (an ``OSError``)."""


@dataclass
class LayerSpec:
    """A parsed spec. ``pass_`` is "forward", or one gradient GEMM of training: "backward_input"
    (dX = dY . W^T; operands a = dY, b = W) or "backward_weight" (dW = X^T . dY; operands a = X, b = dY)."""
    op: str
    shape: dict
    data: dict
    datapath: Datapath
    raw: dict
    path: str | None = None
    pass_: str = "forward"
    batch_norm: object = None       # fxsim.ops.norm.BatchNormConfig for op = "batch_norm"


class SpecText:
    """The TOML text of a spec and its file name, to say in errors where a key is written."""

    def __init__(self, text, path):
        self.text = text or ""
        self.path = path or "<spec>"

    def line(self, key):
        """Line of ``table.key`` in the TOML text (None when it is not written there)."""
        table, _, last = key.rpartition(".")
        current = ""
        for n, line in enumerate(self.text.splitlines(), 1):
            m = re.match(r"^\s*\[([^\]]+)\]", line)
            if m:
                current = m.group(1).strip()
                continue
            if current == table and re.match(rf"^\s*{re.escape(last)}\s*=", line):
                return n
        return None

    def where(self, key) -> str:
        ln = self.line(key)
        return f"{self.path}:{ln}: " if ln else f"{self.path}: "

    def fail(self, key, value, allowed):
        """Raise ``path:line: key = value is not allowed; expected <allowed>``."""
        raise SpecError(f"{self.where(key)}{key} = {value!r} is not allowed; expected {allowed}")

    def reraise(self, key, exc):
        """Raise ``path:line: key: <exc>`` for a validator's (or a constructor's) error about ``key``."""
        raise SpecError(f"{self.where(key)}{key}: {exc}") from None
