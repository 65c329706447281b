"""Tiny calls on one thread.

Starting a parallel region wakes Numba's worker threads and waits for the slowest; for a few thousand
elements that costs more than the work, and on a busy machine a worker that is not scheduled at once
stalls the call for a whole time slice (measured: up to 70 ms for a 3200-element quantization with two
threads on two shared cores, under 0.2 ms on one). Callers wrap a parallel kernel in ``serial_below(work)``:
below ``SMALL_WORK`` units of work (elements, or multiply-adds) it runs on the calling thread.

This is plain Python around the kernels, not inside them: a kernel that calls ``numba.set_num_threads``
refers to the threading layer through a pointer, and Numba cannot cache such a kernel.
"""
import numba as nb

SMALL_WORK = 1 << 16


class serial_below:
    """``with serial_below(work):`` Numba kernels called inside run on one thread when ``work`` < SMALL_WORK
    (Numba's thread count is per calling thread: other threads are unaffected)."""

    def __init__(self, work):
        self.work = work
        self.before = 0

    def __enter__(self):
        self.before = nb.get_num_threads()
        if self.work < SMALL_WORK and self.before > 1:
            nb.set_num_threads(1)
        else:
            self.before = 0
        return self

    def __exit__(self, *exc):
        if self.before:
            nb.set_num_threads(self.before)
        return False
