"""A small layer API to train with, every GEMM running through a bit-exact datapath.

    model = Sequential([Conv2d(1, 8, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(), Linear(128, 10)])
    model.configure(get_recipe("luq"), seed=0)
    logits = model.forward(x); loss, dlogits = softmax_cross_entropy(logits, labels)
    model.backward(dlogits); SGD(model, lr=0.1, momentum=0.9).step()

Each layer keeps, after every call, per-op statistics in ``layer.stats``: accumulator overflow events of
each GEMM, how many gradient values underflowed to zero and how many saturated when quantized.
"""
from __future__ import annotations

import numpy as np

from fxsim.ops.backward import conv2d_backward, conv2d_lowered, linear_backward, relu_backward
from fxsim.ops.lowering import fold_add, geometry, unfold
from fxsim.ops.gemm import gemm
from fxsim.ops.norm import BatchNormConfig, batchnorm_backward, batchnorm_train_forward
from fxsim.ops.pool import avgpool2d, avgpool2d_backward, maxpool2d, maxpool2d_backward
from fxsim.quantize import quantize
from fxsim.training.recipes import Recipe, TensorQuantizer
from fxsim.validate import as_array
from fxsim.errors import InvalidArgument, InvalidType

__all__ = ["Linear", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d", "Flatten", "Sequential", "SGD",
           "softmax_cross_entropy"]


class Layer:
    params: tuple = ()

    def configure(self, recipe: Recipe, seed: int):
        self.recipe = recipe
        self.seed = seed
        self.calls = 0
        self.stats = {}

    def _seed(self):
        self.calls += 1
        return (self.seed * 1_000_003 + self.calls) % (2 ** 62)

    def _count(self, key, n):
        """Add n events to this layer's running statistic ``key``."""
        self.stats[key] = self.stats.get(key, 0) + int(n)


def _overflows(res):
    return int(res.overflow_count.sum())


class _GemmLayer(Layer):
    """Shared quantize -> datapath -> rescale logic of Linear and Conv2d."""

    def _q(self, quantizer, x):
        """(q, scale, underflows): integer formats as their codes (the GEMMs take them as they are)."""
        if quantizer is None:
            return np.asarray(x, dtype=np.float64), 1.0, 0
        if isinstance(quantizer, TensorQuantizer) and quantizer.is_integer:
            return quantizer(x, seed=self._seed(), integer_codes=True)
        return quantizer(x, seed=self._seed())

    def _forward_operands(self, x):
        """Quantized activations and weights with their scales (kept for the backward pass), and the
        forward GEMM's datapath (None: a float64 GEMM)."""
        r = self.recipe
        xq, sx, _ = self._q(r.activations, x)
        wq, sw, _ = self._q(r.weights, self.W)
        self.cache = (xq, sx, wq, sw)
        return xq, sx, wq, sw, r.datapath("forward")

    def _grad(self, dy):
        """(gradient for dW, its scale, gradient for dX, its scale): two copies under two-phase rounding."""
        r = self.recipe
        gq, sg, under = self._q(r.gradients, dy)
        self._count("gradient_underflow_to_zero", under)
        # beyond the top level by more than the float64 rounding of the scaling step
        self._count("gradient_saturations", np.count_nonzero(np.abs(dy) / sg > r.gradients.top * (1 + 2.0 ** -40)))
        if r.gradients_dx is None:
            return gq, sg, gq, sg
        gx, sgx, under = self._q(r.gradients_dx, dy)
        self._count("gradient_dx_underflow_to_zero", under)
        return gq, sg, gx, sgx

    def _quantized_backward(self, dy, need_dx, backward, **kw):
        """The backward GEMMs on quantized gradients: ``backward`` (linear_backward or conv2d_backward)
        runs dX and dW through the recipe's datapaths; their overflows are counted and the results
        rescaled. Returns dX (None unless need_dx); sets self.dW."""
        xq, sx, wq, sw = self.cache
        r = self.recipe
        gq, sg, gx, sgx = self._grad(dy)
        dx, dw, st = backward(xq, wq, gq, dx_datapath=r.datapath("dx"), dw_datapath=r.datapath("dw"),
                              need_dx=need_dx, dy_for_dx=gx, stats="overflow", **kw)
        for k, res in st.items():
            self._count(f"{k}_overflows", _overflows(res))
        self.dW = dw * (sx * sg)
        return dx * (sgx * sw) if need_dx else None


class Linear(_GemmLayer):
    """y = x @ W + b, W (in, out)."""

    def __init__(self, n_in, n_out, *, rng=None):
        rng = rng or np.random.default_rng(0)
        self.W = rng.normal(0, np.sqrt(2.0 / n_in), (n_in, n_out))
        self.b = np.zeros(n_out)
        self.params = ("W", "b")

    def forward(self, x):
        x = as_array("x", x)
        xq, sx, wq, sw, dp = self._forward_operands(x)
        if dp is None:
            y = xq @ wq
        else:
            res = gemm(xq, wq, dp, stats="overflow")   # the layer keeps only the overflow counts
            self._count("forward_overflows", _overflows(res))
            y = res.values
        return y * (sx * sw) + self.b

    def backward(self, dy, need_dx=True):
        xq, sx, wq, sw = self.cache
        self.db = dy.sum(axis=0)
        if self.recipe.gradients is None:
            self.dW = (xq * sx).T @ dy
            return dy @ (wq * sw).T if need_dx else None
        return self._quantized_backward(dy, need_dx, linear_backward)


class Conv2d(_GemmLayer):
    """y = conv2d(x, W) + b, NCHW / OIHW, groups = 1."""

    def __init__(self, c_in, c_out, kernel, *, stride=1, padding=0, rng=None):
        rng = rng or np.random.default_rng(0)
        self.W = rng.normal(0, np.sqrt(2.0 / (c_in * kernel * kernel)), (c_out, c_in, kernel, kernel))
        self.b = np.zeros(c_out)
        self.stride, self.padding = stride, padding
        self.params = ("W", "b")

    def forward(self, x):
        x = as_array("x", x)
        xq, sx, wq, sw, dp = self._forward_operands(x)
        if dp is None:
            cols, OH, OW = unfold(xq, wq.shape[2:], stride=self.stride, padding=self.padding)
            y = (cols @ wq.reshape(wq.shape[0], -1).T).reshape(x.shape[0], OH, OW, -1).transpose(0, 3, 1, 2)
        else:
            y, res = conv2d_lowered(xq, wq, dp, stride=self.stride, padding=self.padding, stats="overflow")
            self._count("forward_overflows", _overflows(res))
        return y * (sx * sw) + self.b[None, :, None, None]

    def backward(self, dy, need_dx=True):
        xq, sx, wq, sw = self.cache
        self.db = dy.sum(axis=(0, 2, 3))
        if self.recipe.gradients is None:
            dx, dw = _conv_backward_float64(xq * sx, wq * sw, dy, self.stride, self.padding, need_dx)
            self.dW = dw
            return dx
        return self._quantized_backward(dy, need_dx, conv2d_backward, stride=self.stride, padding=self.padding)


def _conv_backward_float64(x, w, dy, stride, padding, need_dx):
    O, C, KH, KW = w.shape
    geo = geometry(x.shape[2], x.shape[3], (KH, KW), stride=stride, padding=padding)
    cols, _, _ = unfold(x, (KH, KW), stride=stride, padding=padding)
    dy_mat = dy.transpose(0, 2, 3, 1).reshape(-1, O)
    dw = (dy_mat.T @ cols).reshape(w.shape)
    dx = None
    if need_dx:
        dx = fold_add(dy_mat @ w.reshape(O, -1), x.shape, geo)
    return dx, dw


class ReLU(Layer):
    def forward(self, x):
        self.x = x
        return np.maximum(x, 0.0)

    def backward(self, dy, need_dx=True):
        return relu_backward(self.x, dy)


class MaxPool2d(Layer):
    def __init__(self, k=2):
        self.k = k

    def forward(self, x):
        self.shape = x.shape
        y, self.idx = maxpool2d(x, self.k)
        return y

    def backward(self, dy, need_dx=True):
        return maxpool2d_backward(dy, self.idx, self.k, self.shape)


class AvgPool2d(Layer):
    def __init__(self, k=2):
        self.k = k

    def forward(self, x):
        self.shape = x.shape
        return avgpool2d(x, self.k)

    def backward(self, dy, need_dx=True):
        return avgpool2d_backward(dy, self.k, self.shape)


class BatchNorm2d(Layer):
    """Training-mode batch norm in the formats of ``config`` (fxsim.ops.norm.BatchNormConfig); inputs are
    first rounded to ``config.x_fmt``. With the float64 recipe it computes in float64."""

    def __init__(self, channels, config: BatchNormConfig | None = None):
        self.gamma = np.ones(channels)
        self.beta = np.zeros(channels)
        self.config = config or BatchNormConfig()
        self.params = ("gamma", "beta")

    def forward(self, x):
        if self.recipe.gradients is None:
            mu = x.mean(axis=(0, 2, 3), keepdims=True)
            var = x.var(axis=(0, 2, 3), keepdims=True)
            self.cache64 = ((x - mu) / np.sqrt(var + self.config.eps), 1 / np.sqrt(var + self.config.eps))
            return self.cache64[0] * self.gamma[None, :, None, None] + self.beta[None, :, None, None]
        xq = quantize(x, self.config.x_fmt, overflow="saturate")
        y, self.cache, st = batchnorm_train_forward(xq, self.gamma, self.beta, self.config)
        self._count("statistics_overflows", st["overflows"])
        return y

    def backward(self, dy, need_dx=True):
        if self.recipe.gradients is None:
            xh, rstd = self.cache64
            n = dy.size / dy.shape[1]
            g = dy * self.gamma[None, :, None, None]
            self.dgamma = (dy * xh).sum(axis=(0, 2, 3))
            self.dbeta = dy.sum(axis=(0, 2, 3))
            return rstd / n * (n * g - g.sum(axis=(0, 2, 3), keepdims=True) - xh * (g * xh).sum(axis=(0, 2, 3), keepdims=True))
        dx, self.dgamma, self.dbeta = batchnorm_backward(dy, self.cache, self.config)
        return dx


class Flatten(Layer):
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self.shape)


class Sequential:
    def __init__(self, layers):
        self.layers = list(layers)

    def configure(self, recipe, seed=0):
        for i, layer in enumerate(self.layers):
            layer.configure(recipe, seed * 101 + i)
        return self

    def forward(self, x):
        x = as_array("x", x)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for i, layer in enumerate(reversed(self.layers)):
            dy = layer.backward(dy, need_dx=(i < len(self.layers) - 1))
        return dy

    def stats(self):
        return {f"{i}:{type(l).__name__}": dict(l.stats) for i, l in enumerate(self.layers) if getattr(l, "stats", None)}


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy and its gradient (computed in float64 on the host). ``labels``: one class index
    per row of ``logits``, each in 0..C-1 (negative indices are refused, not counted from the end)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise InvalidArgument(f"logits must be 2-D (rows, classes), got shape {logits.shape}")
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise InvalidType(f"labels must be integer class indices, got dtype {lab.dtype}")
    if lab.shape != (logits.shape[0],):
        raise InvalidArgument(f"labels must have shape ({logits.shape[0]},) (one per row of logits), got {lab.shape}")
    bad = (lab < 0) | (lab >= logits.shape[1])
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArgument(f"labels[{i}] = {int(lab[i])} is not a class index in 0..{logits.shape[1] - 1}")
    labels = lab.astype(np.intp)
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = logits.shape[0]
    loss = float(-np.mean(np.log(p[np.arange(n), labels] + 1e-300)))
    g = p.copy()
    g[np.arange(n), labels] -= 1.0
    return loss, g / n


class SGD:
    """SGD with momentum; master weights are kept in ``recipe.master`` (rounded after every update)."""

    def __init__(self, model: Sequential, lr=0.1, momentum=0.9, weight_decay=0.0):
        self.model, self.lr, self.momentum, self.wd = model, lr, momentum, weight_decay
        self.v = {}

    def step(self):
        for li, layer in enumerate(self.model.layers):
            for name in getattr(layer, "params", ()):
                p = getattr(layer, name)
                g = getattr(layer, "d" + name) + self.wd * p
                key = (li, name)
                v = self.momentum * self.v.get(key, 0.0) + g
                self.v[key] = v
                new = p - self.lr * v
                master = getattr(layer.recipe, "master", None)
                if master is not None and layer.recipe.gradients is not None:
                    new = quantize(new, master)
                setattr(layer, name, new)
