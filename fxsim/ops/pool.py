"""Pooling forward and backward. Max pooling only routes values (exact in every format); average pooling
over a power-of-two window sums exactly and divides by a power of two (exact), then rounds to the
activation grid where the caller quantizes."""
from __future__ import annotations

import numpy as np

from fxsim.errors import InvalidArgument
__all__ = ["maxpool2d", "maxpool2d_backward", "avgpool2d", "avgpool2d_backward"]


def _windows(x, k):
    N, C, H, W = x.shape
    if H % k or W % k:
        raise InvalidArgument(f"pooling window {k} must divide the spatial size {H}x{W}")
    return x.reshape(N, C, H // k, k, W // k, k)


def maxpool2d(x, k=2):
    """Non-overlapping k x k max pooling; returns (y, argmax mask) — ties go to the first maximum."""
    win = _windows(x, k).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape[0], x.shape[1], x.shape[2] // k, x.shape[3] // k, k * k)
    idx = np.argmax(win, axis=-1)
    y = np.take_along_axis(win, idx[..., None], axis=-1)[..., 0]
    return y, idx


def maxpool2d_backward(dy, idx, k, shape):
    """Route each output gradient to the input that was the maximum."""
    N, C, H, W = shape
    g = np.zeros((N, C, H // k, W // k, k * k), dtype=dy.dtype)
    np.put_along_axis(g, idx[..., None], dy[..., None], axis=-1)
    return g.reshape(N, C, H // k, W // k, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, H, W)


def avgpool2d(x, k=2):
    if k & (k - 1):
        raise InvalidArgument(f"average pooling needs a power-of-two window (exact division), got {k}")
    return _windows(x, k).sum(axis=(3, 5)) / (k * k)


def avgpool2d_backward(dy, k, shape):
    if k & (k - 1):
        raise InvalidArgument(f"average pooling needs a power-of-two window (exact division), got {k}")
    return np.repeat(np.repeat(dy / (k * k), k, axis=2), k, axis=3)
