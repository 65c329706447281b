"""Ctrl-C for the command line: stop at once, even inside a compiled kernel, with exit 130 and one line.

Python runs its SIGINT handler only between bytecodes, so a Numba kernel that runs for a minute ignores
Ctrl-C for a minute. While a command runs, :class:`immediate_interrupts` installs a native SIGINT
handler (a Numba ``cfunc``: no interpreter, no GIL) that writes one line to stderr and calls
``_exit(130)`` -- ``write`` and ``_exit`` are async-signal-safe. Nothing half-written
survives: outputs are built in marked temporary directories that the next run beside them removes
(:mod:`fxsim.runtime.outputs`), and worker processes die with their parent (:mod:`fxsim.runtime.workers`). Where the
native handler cannot be built, Python's ``KeyboardInterrupt`` remains (the command line handles it the
same way, once the running kernel returns).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
import threading

import numpy as np

__all__ = ["immediate_interrupts"]

_built = {}


_MESSAGE = np.frombuffer(b"fxsim: interrupted\n", dtype=np.uint8).copy()
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None) if sys.platform.startswith(("linux", "darwin")) else None
if _LIBC is not None:
    import numba as _nb
    from numba import types as _t

    # libc by symbol name (resolved when the code is loaded, so the compiled handler can be cached);
    # the buffer's address passed as size_t: the same register as a pointer in every ABI fxsim runs on
    _write = _t.ExternalFunction("write", _t.intp(_t.int32, _t.uintp, _t.uintp))
    _exit = _t.ExternalFunction("_exit", _t.void(_t.int32))

    @_nb.cfunc(_t.void(_t.int32), cache=True)
    def _handler(signum):
        _write(2, _MESSAGE.ctypes.data, _MESSAGE.size)    # a constant array of the compiled code
        _exit(130)


def _native_handler():
    """(cfunc handler, libc.signal), or None where unsupported."""
    if "h" in _built:
        return _built["h"]
    _built["h"] = None
    if _LIBC is None:
        return None
    set_handler = _LIBC.signal
    set_handler.argtypes = [ctypes.c_int, ctypes.c_void_p]
    set_handler.restype = ctypes.c_void_p
    _built["h"] = (_handler, set_handler)
    return _built["h"]


class immediate_interrupts:
    """While active (in the main thread), SIGINT writes "fxsim: interrupted" to stderr and exits with
    status 130 at once. The previous Python handler is restored on exit."""

    def __init__(self):
        self.active = False

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        h = _native_handler()
        if h is None:
            return self
        handler, set_handler = h
        self.previous = signal.getsignal(signal.SIGINT)
        if sys.stderr is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        set_handler(signal.SIGINT, handler.address)
        self.active = True
        return self

    def __exit__(self, *exc):
        if self.active:
            prev = self.previous if self.previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, prev)           # reinstalls Python's own C-level handler
            self.active = False
        return False
