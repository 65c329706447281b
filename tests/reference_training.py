"""Plain-Python references of the training ops: literal loops over the definitions, listing each output's
operand pairs in the order the hardware adds them, then handing the pairs to a literal accumulator
(``dot(a_list, b_list) -> value``) — the integer or float datapath reference of the tests."""
from __future__ import annotations

import numpy as np


def conv_forward_pairs(x, w, stride, pad):
    """{(n, o, i, j): (x list, w list)} in (c, kh, kw) order, padding zeros included."""
    N, C, H, W = x.shape
    O, _, K, _ = w.shape
    OH, OW = (H + 2 * pad - K) // stride + 1, (W + 2 * pad - K) // stride + 1
    out = {}
    for n in range(N):
        for o in range(O):
            for i in range(OH):
                for j in range(OW):
                    xs, ws = [], []
                    for c in range(C):
                        for kh in range(K):
                            for kw in range(K):
                                h, v = i * stride + kh - pad, j * stride + kw - pad
                                xs.append(float(x[n, c, h, v]) if 0 <= h < H and 0 <= v < W else 0.0)
                                ws.append(float(w[o, c, kh, kw]))
                    out[(n, o, i, j)] = (xs, ws)
    return out, (N, O, OH, OW)


def conv_dx_pairs(w, dy, x_shape, stride, pad):
    """Input gradient as the transposed convolution computes it: for input (n, c, h, v) the pairs
    (dY, W) over (o, kh', kw') with the flipped kernel W[o, c, K-1-kh', K-1-kw'] and dY read at position
    (h + kh' - (K-1-pad), v + kw' - (K-1-pad)) of dY dilated by the stride (zero where no output lies)."""
    N, C, H, W = x_shape
    O, _, K, _ = w.shape
    OH, OW = dy.shape[2], dy.shape[3]
    q = K - 1 - pad

    def dil(n, o, p, r):
        if p < 0 or r < 0 or p % stride or r % stride or p // stride >= OH or r // stride >= OW:
            return 0.0
        return float(dy[n, o, p // stride, r // stride])

    out = {}
    for n in range(N):
        for c in range(C):
            for h in range(H):
                for v in range(W):
                    gs, ws = [], []
                    for o in range(O):
                        for kh in range(K):
                            for kw in range(K):
                                gs.append(dil(n, o, h + kh - q, v + kw - q))
                                ws.append(float(w[o, c, K - 1 - kh, K - 1 - kw]))
                    out[(n, c, h, v)] = (gs, ws)
    return out


def conv_dw_pairs(x, dy, w_shape, stride, pad):
    """Weight gradient dW[o, c, kh, kw]: pairs (x, dY) over (n, oh, ow) in that order, padding included."""
    N, C, H, W = x.shape
    O, _, K, _ = w_shape
    OH, OW = dy.shape[2], dy.shape[3]
    out = {}
    for o in range(O):
        for c in range(C):
            for kh in range(K):
                for kw in range(K):
                    xs, gs = [], []
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                h, v = i * stride + kh - pad, j * stride + kw - pad
                                xs.append(float(x[n, c, h, v]) if 0 <= h < H and 0 <= v < W else 0.0)
                                gs.append(float(dy[n, o, i, j]))
                    out[(o, c, kh, kw)] = (xs, gs)
    return out


def evaluate(pairs, shape, dot):
    """Array of ``shape`` whose entry at each key is dot(*pairs[key])."""
    y = np.zeros(shape)
    for key, (a, b) in pairs.items():
        y[key] = dot(a, b)
    return y


def maxpool_backward_ref(x, dy, k):
    """Each output gradient goes to the first maximum of its k x k window (row-major scan)."""
    g = np.zeros_like(x)
    N, C, H, W = x.shape
    for n in range(N):
        for c in range(C):
            for i in range(H // k):
                for j in range(W // k):
                    best = None
                    for a in range(k):
                        for b in range(k):
                            if best is None or x[n, c, i * k + a, j * k + b] > x[n, c, best[0], best[1]]:
                                best = (i * k + a, j * k + b)
                    g[n, c, best[0], best[1]] += dy[n, c, i, j]
    return g


def loss_and_finite_difference(f, p, eps=2.0 ** -20):
    """Central differences of the scalar f() with respect to every entry of the array p (modified in place
    and restored)."""
    g = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        old = p[idx]
        p[idx] = old + eps
        up = f()
        p[idx] = old - eps
        down = f()
        p[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def batchnorm_ref(x, gamma, beta, dy, cfg, rstd_of):
    """Training batch norm of x (N, C, H, W) step by step in exact Fractions, each elementwise step rounded
    once to its stated float format (reference_float_datapath.round_fraction, half-even): the channel sum
    exact (a wide fixed-point accumulator), Σd·d in ``cfg.stat_acc`` and the backward sums Σq, Σq·x̂ in
    ``cfg.grad_acc``, each by the literal float-datapath reference in ``cfg.order``. ``rstd_of(v)`` is the
    1/sqrt unit's reference. Returns (y, dx, dgamma, dbeta) as float64 arrays."""
    from fractions import Fraction as F

    from fxsim.datapath import Accumulator, Datapath
    from fxsim.formats import parse_format
    from fxsim.modes import Overflow, Rounding
    from tests.reference_float_datapath import RefFloatDatapath, round_fraction

    stat, out, gf = (parse_format(f) for f in (cfg.stat_fmt, cfg.out_fmt, cfg.grad_fmt))

    def R(v, fmt):
        return F(round_fraction(F(v), fmt, Rounding.HALF_EVEN, Overflow.IEEE)[0])

    def reduce(a, b, a_fmt, b_fmt, acc):
        acc = Accumulator(acc, overflow="ieee", rounding="half_even")
        dp = Datapath(a=a_fmt, b=b_fmt, accumulator=acc, order=cfg.order)
        return F(RefFloatDatapath(dp).dot([float(v) for v in a], [float(v) for v in b], 0.0, 0)[0])

    N, C, H, W = x.shape
    n = N * H * W
    y, dx = np.zeros(x.shape), np.zeros(x.shape)
    dgamma, dbeta = np.zeros(C), np.zeros(C)
    inv_n = R(F(1, n), stat)
    for c in range(C):
        xs = [F(float(x[a, c, h, w])) for a in range(N) for h in range(H) for w in range(W)]
        dys = [F(float(dy[a, c, h, w])) for a in range(N) for h in range(H) for w in range(W)]
        g_c, b_c = F(float(gamma[c])), F(float(beta[c]))
        mean = R(sum(xs) * inv_n, stat)
        d = [R(v - mean, stat) for v in xs]
        var = R(reduce(d, d, stat, stat, cfg.stat_acc) * inv_n, stat)
        rstd = F(rstd_of(float(var) + cfg.eps))
        xhat = [R(v * rstd, out) for v in d]
        ys = [R(R(v * g_c, out) + b_c, out) for v in xhat]
        q = [R(v, gf) for v in dys]
        db = reduce(q, [1] * n, gf, "int2", cfg.grad_acc)
        dg = reduce(q, xhat, gf, out, cfg.grad_acc)
        m_g = R(R(g_c * db, stat) * inv_n, stat)
        m_gx = R(R(g_c * dg, stat) * inv_n, stat)
        dxs = []
        for p, h_ in zip(q, xhat):
            t = R(R(p * g_c, gf) - m_g, gf)
            t = R(t - R(h_ * m_gx, gf), gf)
            dxs.append(R(t * rstd, gf))
        k = 0
        for a in range(N):
            for h in range(H):
                for w in range(W):
                    y[a, c, h, w], dx[a, c, h, w] = float(ys[k]), float(dxs[k])
                    k += 1
        dgamma[c], dbeta[c] = float(dg), float(db)
    return y, dx, dgamma, dbeta


# ------------------------------------------------------------------------------ general conv gradients
def _conv_geometry(x_shape, w_shape, stride, pad, dilation, groups):
    N, C, H, W = x_shape
    O, Cg, KH, KW = w_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    return N, C, H, W, O, Cg, KH, KW, O // groups, OH, OW, sh, sw, ph, pw, dh, dw


def conv_dx_terms(w, dy, x_shape, stride, pad, dilation, groups, fill, order="ckk"):
    """Input gradient straight from the definition y[n, o, i, j] = sum x[n, c, i*sh + kh*dh - ph, j*sw +
    kw*dw - pw] * w[o, c', kh, kw]: for each input (n, c, h, v), the (dY, W) pairs of every (o, kh, kw)
    of c's group, in the hardware's order (o outermost, then the flipped taps kh = KH-1 .. 0, kw = KW-1 ..
    0; ``order="kkc"``: the taps outermost, o innermost); a tap that no output pixel reads through gives
    (``fill``, W), ``fill`` being dY's zero point code. Plain Python integers/floats, no array arithmetic."""
    w_shape = (len(w), len(w[0]), len(w[0][0]), len(w[0][0][0]))
    N, C, H, W, O, Cg, KH, KW, Og, OH, OW, sh, sw, ph, pw, dh, dw = _conv_geometry(
        x_shape, w_shape, stride, pad, dilation, groups)

    def out_index(pos, k, d, s, p, size):
        t = pos + p - k * d                 # = i * s for the output pixel i that reads pos through tap k
        return t // s if t >= 0 and t % s == 0 and t // s < size else None

    out = {}
    for n in range(N):
        for c in range(C):
            g, cg = divmod(c, Cg)
            for h in range(H):
                for v in range(W):
                    gs, ws = [], []
                    terms = [(o, kh, kw) for o in range(g * Og, (g + 1) * Og)
                             for kh in reversed(range(KH)) for kw in reversed(range(KW))]
                    if order == "kkc":
                        terms = [(o, kh, kw) for kh in reversed(range(KH)) for kw in reversed(range(KW))
                                 for o in range(g * Og, (g + 1) * Og)]
                    for o, kh, kw in terms:
                        i = out_index(h, kh, dh, sh, ph, OH)
                        j = out_index(v, kw, dw, sw, pw, OW)
                        gs.append(fill if i is None or j is None else dy[n][o][i][j])
                        ws.append(w[o][cg][kh][kw])
                    out[(n, c, h, v)] = (gs, ws)
    return out


def conv_dw_terms(x, dy, w_shape, stride, pad, dilation, groups, fill):
    """Weight gradient straight from the definition: dW[o, c', kh, kw] pairs (x, dY) over (n, i, j) in that
    order, the input read at (i*sh + kh*dh - ph, j*sw + kw*dw - pw) of channel c' of o's group; outside the
    input it is ``fill``, x's zero point code."""
    N, C, H, W, O, Cg, KH, KW, Og, OH, OW, sh, sw, ph, pw, dh, dw = _conv_geometry(
        (len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])), w_shape, stride, pad, dilation, groups)
    out = {}
    for o in range(O):
        c0 = (o // Og) * Cg
        for cg in range(Cg):
            for kh in range(KH):
                for kw in range(KW):
                    xs, gs = [], []
                    for n in range(N):
                        for i in range(OH):
                            for j in range(OW):
                                h, v = i * sh + kh * dh - ph, j * sw + kw * dw - pw
                                xs.append(x[n][c0 + cg][h][v] if 0 <= h < H and 0 <= v < W else fill)
                                gs.append(dy[n][o][i][j])
                    out[(o, cg, kh, kw)] = (xs, gs)
    return out


def conv_gradients_einsum(x, w, dy, stride, pad, dilation, groups):
    """dX and dW of L = sum(y * dy) for real-valued arrays, by a route independent of the lowering: dW
    gathers padded input windows with one einsum per tap; dX scatters each tap's einsum back into a padded
    input (float64; exact while every partial sum fits 53 bits)."""
    N, C, H, W, O, Cg, KH, KW, Og, OH, OW, sh, sw, ph, pw, dh, dw = _conv_geometry(
        x.shape, w.shape, stride, pad, dilation, groups)
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    dxp = np.zeros_like(xp)
    dW = np.zeros(w.shape)
    for g in range(groups):
        cs, os_ = slice(g * Cg, (g + 1) * Cg), slice(g * Og, (g + 1) * Og)
        for kh in range(KH):
            for kw in range(KW):
                rows = slice(kh * dh, kh * dh + sh * (OH - 1) + 1, sh)
                cols = slice(kw * dw, kw * dw + sw * (OW - 1) + 1, sw)
                dW[os_, :, kh, kw] = np.einsum("ncij,noij->oc", xp[:, cs, rows, cols], dy[:, os_])
                dxp[:, cs, rows, cols] += np.einsum("noij,oc->ncij", dy[:, os_], w[os_, :, kh, kw])
    return dxp[:, :, ph:ph + H, pw:pw + W], dW
