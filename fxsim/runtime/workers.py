"""Worker processes that never outlive the process that started them, and stay quiet on Ctrl-C.

``worker_init`` is a ``ProcessPoolExecutor`` initializer: the worker ignores SIGINT (Ctrl-C reaches the
whole process group; the parent handles it and stops the pool, so there is one message, not one
traceback per process), asks Linux to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG,
SIGKILL)``: immediate, even while a kernel runs) and, elsewhere, watches its parent's pid from a thread.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

__all__ = ["worker_init", "stop_pool", "quiet_spawning", "start_resource_tracker"]

_PR_SET_PDEATHSIG = 1


def _watch_parent(parent_pid):
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(0.5)


class quiet_spawning:
    """Block SIGINT in this thread while worker processes are started: they inherit the mask, so a Ctrl-C
    during their start-up stays pending until ``worker_init`` ignores it (instead of a traceback from each
    worker's import). A Ctrl-C that arrives meanwhile reaches this process when the block ends."""

    def __enter__(self):
        self.old = None
        if hasattr(signal, "pthread_sigmask"):
            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)
        return False


def worker_init(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:         # the parent died before the request took effect
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def stop_pool(executor) -> None:
    """Stop a ProcessPoolExecutor now: cancel what has not started and kill the workers."""
    procs = list(getattr(executor, "_processes", {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.kill()
        except (OSError, AttributeError, ValueError):
            pass
    for p in procs:
        try:
            p.join(5)
        except (OSError, AttributeError, ValueError, AssertionError):
            pass


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (if it is not running yet) with its "leaked semaphore"
    warning off: when Ctrl-C ends this process at once (fxsim.runtime.interrupts), the tracker still removes the
    pool's semaphores, and its warning would only add lines to the one the user should see."""
    from multiprocessing import resource_tracker
    flag = "ignore:resource_tracker:UserWarning"
    added = flag not in sys.warnoptions
    if added:
        sys.warnoptions.append(flag)
    try:
        resource_tracker.ensure_running()
    finally:
        if added:
            sys.warnoptions.remove(flag)
