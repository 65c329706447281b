"""First use of a Numba kernel: one line on the command when a call is about to compile.

Numba compiles a kernel the first time it runs with a signature and keeps the machine code in its cache
(``NUMBA_CACHE_DIR``, else ``__pycache__`` next to the kernels). The command line says so when a call is
about to compile -- one line on stderr, once per process -- so a first run that takes seconds does not
look hung. The library itself prints nothing unless ``announce_compiles`` switched the notice on.

First use is detected cheaply: the kernel has no compiled signature in this process and its cache holds
no index for it (a cache written by another version, or for other argument types, may still compile;
the notice is a courtesy, not a promise).
"""
from __future__ import annotations

import os
import sys

__all__ = ["announce_compiles", "notice_first_use", "will_compile"]

MESSAGE = "compiling kernels for this datapath (first use, cached afterwards)..."

_stream = None        # where the notice goes; None: nowhere (library use)
_said = False
_known = set()        # kernels seen compiled or cached in this process


def announce_compiles(stream=None, *, first=()) -> None:
    """Print the first-use notice to ``stream`` (default: whatever ``sys.stderr`` is when it prints) from now
    on; the command line calls this. ``first``: kernels the command is about to run whatever the datapath
    (quantizing its data), checked at once -- the quantize layer sits above the runtime and cannot ask."""
    global _stream
    _stream = stream if stream is not None else _STDERR
    for kernel in first:
        notice_first_use(kernel)


_STDERR = object()    # "sys.stderr at the time of printing"


def _cached(dispatcher) -> bool:
    cache = getattr(dispatcher, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    return index is not None and os.path.exists(index)


def will_compile(dispatcher) -> bool:
    """Whether calling ``dispatcher`` (a Numba CPU dispatcher) now compiles it: nothing compiled in this
    process and no cache index on disk."""
    if id(dispatcher) in _known:
        return False
    if getattr(dispatcher, "signatures", None) or _cached(dispatcher):
        _known.add(id(dispatcher))
        return False
    return True


def notice_first_use(dispatcher):
    """``dispatcher`` itself, after printing the notice once per process when it is about to compile and
    the notice is on."""
    global _said
    if _stream is not None and not _said and will_compile(dispatcher):
        _said = True
        try:
            print(MESSAGE, file=sys.stderr if _stream is _STDERR else _stream, flush=True)
        except (OSError, ValueError):     # a closed stderr must not break the computation
            pass
    return dispatcher
