"""Reusable scratch buffers for the engines' large temporaries.

A fresh multi-megabyte NumPy array is new memory from the operating system: the first write to each 4 KiB
page faults, and freeing it hands the pages back. For a 512 x 512 x 512 saturating GEMM that was 1.8 ms of
4.8 ms (block sums, float copies of the operands). Temporaries that never leave an engine call come from
here instead: one buffer per thread and per name, grown when needed, never shared between threads, so
concurrent calls from several threads stay independent. Their contents are undefined on return.
"""
from __future__ import annotations

import math
import threading

import numpy as np

__all__ = ["scratch", "zeros", "release"]

_MAX_BYTES = 64 << 20    # larger temporaries are allocated fresh each time (their page faults are a
                         # small share of the work that needs them), so a thread keeps a few buffers of
                         # at most 64 MiB each
_KEEP_BYTES = 16 << 20  # what release() leaves: buffers up to 16 MiB (a 1024 x 2048 int64 plane and below)
_local = threading.local()
_registry = []           # every thread's buffer dicts, so that release() reaches the worker threads' too
_registry_lock = threading.Lock()


def _buffers(kind: str) -> dict:
    bufs = _local.__dict__.get(kind)
    if bufs is None:
        bufs = _local.__dict__[kind] = {}
        with _registry_lock:
            _registry.append(bufs)
    return bufs


def release(keep_bytes: int = _KEEP_BYTES) -> None:
    """Drop every thread's buffers larger than ``keep_bytes``: after a large call the engines keep only
    small buffers (their reuse is what saves time on small calls) instead of holding the peak working
    set. Safe while another thread uses a buffer: an array handed out keeps its memory alive; the
    buffer is only no longer reused."""
    with _registry_lock:
        dicts = list(_registry)
    for bufs in dicts:
        for name, buf in list(bufs.items()):
            if buf.nbytes > keep_bytes:
                bufs.pop(name, None)


def scratch(name: str, shape, dtype) -> np.ndarray:
    """An uninitialised array of ``shape``/``dtype`` backed by this thread's buffer ``name``.

    Valid until the next request for the same name on the same thread: use one name per temporary that
    is alive at the same time, and never return the array to a caller."""
    dtype = np.dtype(dtype)
    if isinstance(shape, int):
        shape = (shape,)
    elif isinstance(shape, (tuple, list)):
        shape = tuple(int(s) for s in shape)
    else:
        shape = tuple(int(s) for s in np.atleast_1d(shape))
    nbytes = math.prod(shape) * dtype.itemsize   # Python ints: np.prod costs more than these calls' work
    if nbytes > _MAX_BYTES:
        return np.empty(shape, dtype=dtype)
    bufs = _buffers("buffers")
    buf = bufs.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 64), dtype=np.uint8)
        bufs[name] = buf
    return buf[:nbytes].view(dtype).reshape(shape)


def zeros(shape, dtype) -> np.ndarray:
    """A zero array of ``shape``/``dtype`` shared by every caller on this thread: for inputs that are
    read and never written (the engines' zero initial accumulators). It is zeroed once, when allocated or
    grown, never again -- writing into it is a bug."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _MAX_BYTES:
        return np.zeros(shape, dtype=dtype)
    bufs = _buffers("zeros")
    buf = bufs.get(0)
    if buf is None or buf.nbytes < nbytes:
        buf = np.zeros(max(nbytes, 64), dtype=np.uint8)
        bufs[0] = buf
    return buf[:nbytes].view(dtype).reshape(shape)
