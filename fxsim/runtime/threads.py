"""Row-parallel pipelines around single-threaded BLAS calls.

The exact shortcuts of the integer engine are a BLAS product followed by passes over its result (exact
integers, wrap, the saturation test). Run as "multi-threaded BLAS, then a serial pass", the pass competes
with OpenBLAS's worker threads, which keep spinning for milliseconds after each call (measured on 2 cores:
the pass runs 2x slower, and a parallel Numba region started then waits 1.5-4 ms). Instead, the rows of
the output are split into one slab per thread and each thread runs the whole pipeline on its slab -- its
own single-threaded BLAS call, then its passes (Numba kernels compiled with nogil=True). Nothing spins,
and the passes run in parallel too.

OpenBLAS's thread count is process-wide: while such a pipeline runs, BLAS calls made by other threads of
the program run single-threaded as well.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["row_parallel", "thread_count"]

_lock = threading.Lock()
_pool = None
_pool_size = 0
_controller = None
_blas_users = 0          # pipelines running now; the first saves OpenBLAS's setting, the last restores it
_blas_limiter = None


def _forget_after_fork():
    """A forked child has none of its parent's threads: start afresh, or its first slab would wait forever
    on a pool whose workers do not exist."""
    global _lock, _pool, _pool_size, _blas_users, _blas_limiter
    _lock = threading.Lock()
    _pool, _pool_size, _blas_users, _blas_limiter = None, 0, 0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def thread_count() -> int:
    """Threads to use: Numba's setting (NUMBA_NUM_THREADS / numba.set_num_threads), else the CPU count."""
    try:
        import numba
        return max(1, int(numba.get_num_threads()))
    except Exception:   # pragma: no cover - numba is a hard dependency; this is belt and braces
        return max(1, os.cpu_count() or 1)


def _resources(n):
    global _pool, _pool_size, _controller
    with _lock:
        if _pool is None or _pool_size < n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="fxsim-rows")
            _pool_size = n
        if _controller is None:
            from threadpoolctl import ThreadpoolController
            _controller = ThreadpoolController()
    return _pool, _controller


def row_parallel(fn, M: int, *, work: int, min_work: int = 1 << 22):
    """[fn(rows) for each slab of range(M)], the slabs running concurrently, one per thread, with BLAS
    limited to one thread. Below ``min_work`` (a MAC count) or with one thread: fn(slice(0, M)) alone,
    with BLAS as configured."""
    n = min(thread_count(), M)
    if n <= 1 or work < min_work:
        return [fn(slice(0, M))]
    bounds = [M * t // n for t in range(n + 1)]
    slabs = [slice(bounds[t], bounds[t + 1]) for t in range(n)]
    pool, _ = _resources(n - 1)
    with _single_threaded_blas():
        futures = [pool.submit(fn, s) for s in slabs[1:]]
        try:
            first = fn(slabs[0])   # the calling thread takes one slab itself
        finally:
            rest = [f.result() for f in futures]   # never leave a slab running past this call
        return [first] + rest


class _single_threaded_blas:
    """OpenBLAS at one thread while any pipeline runs. The setting is process-wide, so concurrent
    pipelines share one limit: the first to enter sets it, the last to leave restores the user's."""

    def __enter__(self):
        global _blas_users, _blas_limiter
        _, controller = _resources(1)
        with _lock:
            if _blas_users == 0:
                _blas_limiter = controller.limit(limits=1, user_api="blas")
            _blas_users += 1

    def __exit__(self, *exc):
        global _blas_users, _blas_limiter
        with _lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
