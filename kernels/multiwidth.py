"""One pass over a GEMM's products for a whole accumulator-width sweep (several widths and overflow modes
of one order): the products are formed once per output and every configuration reads them.

Configurations travel as arrays: ``cw[c]`` the width, ``cm[c]`` the overflow mode (rounding.WRAP,
SATURATE, SATURATE_SYMMETRIC or SATURATE_ZERO), ``clo[c]``/``chi[c]`` the register's range. Outputs:
``acc_out[c]``/``nov_out[c]`` (register and overflow count per configuration, as int_gemm's kernels
return them for that configuration), and once for all of them the exact sum and the largest and smallest
exact partial sum (int_gemm.dot's statistics for the order: the initial value and 0 included; the tree
order includes the products).

Why one pass is exact:

- An output whose exact partial sums all lie in a configuration's range never overflows there: its
  register is the exact sum and its count 0, whatever the mode. A block of outputs is simulated for a
  configuration only where some partial sum leaves that range (the first pass finds the extremes).
- Wrap: a register of W bits standing for the exact value x holds wrap(x) = x - 2**W * bucket(x) with
  bucket(x) = floor((x + 2**(W-1)) / 2**W) (signed; floor(x / 2**W) unsigned). An adder receiving two
  registers u, v (or a register and an unwrapped product, whose bucket is 0) computes
  wrap(u) + wrap(v) = u + v - 2**W * (bucket(u) + bucket(v)), which is outside the range, i.e. counts one
  overflow, exactly when bucket(u + v) != bucket(u) + bucket(v). For the sequential order this is "the
  2**W-bucket of the exact partial sum changes at this step"; for lanes and trees the rule is applied
  at every adder with its operands' buckets. The register's final value is wrap(exact sum).
- Saturating modes depend on the path: the blocks that leave the range run the register itself, all
  configurations reading the same products in one loop.

The vectorised kernels (sequential and chunked orders, products (a * b) << L) need every exact partial sum
below 2**62 in magnitude (the caller checks its bound), so x + 2**(W-1) cannot overflow. The per-output
kernel (every order, any product stage) uses int_gemm's own adders.
"""
import numba as nb
import numpy as np

from .int_gemm import SEQUENTIAL, CHUNKED, _pairwise, add, product
from .rounding import SATURATE_ZERO, WRAP, wrap

RB = 4          # rows of a block (each row of B is read once per block)
NT = 64         # columns of a block
KC = 16         # products per chunk: each configuration's register row takes a chunk while in cache


@nb.njit(cache=True, inline="always")
def _bucket(x, W, signed):
    if signed:
        return (x + (np.int64(1) << (W - 1))) >> W
    return x >> W


@nb.njit(cache=True)
def _sim(pb, K, init, bits, signed, lo, hi, ovf, order, lanes, combine, reg, ex, st):
    """int_gemm.dot with the products given (pb[:K]): returns (accumulator, overflow count) and writes
    (max, min exact partial sum, exact sum) into st. Same adders, same order."""
    nov = 0
    mx = init if init > 0 else np.int64(0)
    mn = init if init < 0 else np.int64(0)
    dummy = np.empty(1, dtype=np.int64)
    if order == SEQUENTIAL:
        acc = init
        exact = init
        for k in range(K):
            p = pb[k]
            acc, of = add(acc, p, bits, signed, lo, hi, ovf)
            nov += of
            exact += p
            mx, mn = max(mx, exact), min(mn, exact)
        st[0] = mx
        st[1] = mn
        st[2] = exact
        return acc, nov
    if order == CHUNKED:
        P = lanes
        C = (K + P - 1) // P
        for l in range(P):
            reg[l] = 0
            ex[l] = 0
        reg[0] = init
        ex[0] = init
        for l in range(P):              # lanes are independent: lane by lane gives their registers
            r = reg[l]
            e = ex[l]
            for k in range(l * C, min(K, (l + 1) * C)):
                p = pb[k]
                r, of = add(r, p, bits, signed, lo, hi, ovf)
                nov += of
                e += p
                mx, mn = max(mx, e), min(mn, e)
            reg[l] = r
            ex[l] = e
        if combine == 0:
            acc = reg[0]
            exact = ex[0]
            for l in range(1, P):
                acc, of = add(acc, reg[l], bits, signed, lo, hi, ovf)
                nov += of
                exact += ex[l]
                mx, mn = max(mx, exact), min(mn, exact)
        else:
            of, _, mx, mn = _pairwise(reg, ex, P, dummy[:0], bits, signed, lo, hi, ovf, dummy, False, 0, mx, mn)
            nov += of
            acc = reg[0]
            exact = ex[0]
        st[0] = mx
        st[1] = mn
        st[2] = exact
        return acc, nov
    for k in range(K):                  # TREE
        reg[k] = pb[k]
        ex[k] = pb[k]
        mx, mn = max(mx, pb[k]), min(mn, pb[k])
    if K == 0:
        reg[0] = 0
        ex[0] = 0
    of, _, mx, mn = _pairwise(reg, ex, K, dummy[:0], bits, signed, lo, hi, ovf, dummy, False, 0, mx, mn)
    nov += of
    acc, of = add(init, reg[0], bits, signed, lo, hi, ovf)
    nov += of
    e = init + ex[0]
    mx, mn = max(mx, e), min(mn, e)
    st[0] = mx
    st[1] = mn
    st[2] = e
    return acc, nov


@nb.njit(cache=True, parallel=True)
def multi_gemm_outputs(A, Bt, init, cfg, order, lanes, combine, signed, cw, cm, clo, chi,
                       acc_out, nov_out, exact_out, max_out, min_out):
    """Every order and product stage, one output at a time (parallel over rows): the products of an
    output are formed once (int_gemm.product with ``cfg``), its exact statistics found in a first run
    through a register that cannot overflow, and each configuration whose range some partial sum leaves
    is run through int_gemm's adders on those products. B given transposed (N, K)."""
    M, K = A.shape
    N = Bt.shape[0]
    nC = cw.shape[0]
    n = max(K, lanes, 1)
    for i in nb.prange(M):
        pb = np.empty(max(K, 1), dtype=np.int64)
        reg = np.empty(n, dtype=np.int64)
        ex = np.empty(n, dtype=np.int64)
        st = np.empty(3, dtype=np.int64)
        st2 = np.empty(3, dtype=np.int64)
        a = A[i]
        for j in range(N):
            b = Bt[j]
            for k in range(K):
                pb[k] = product(a[k], b[k], cfg)
            s0 = init[i, j]
            _sim(pb, K, s0, 64, True, np.int64(-9223372036854775807 - 1), np.int64(9223372036854775807), WRAP,
                 order, lanes, combine, reg, ex, st)
            mx, mn, e = st[0], st[1], st[2]
            exact_out[i, j] = e
            max_out[i, j] = mx
            min_out[i, j] = mn
            for c in range(nC):
                if mn >= clo[c] and mx <= chi[c]:
                    acc_out[c, i, j] = e
                    nov_out[c, i, j] = 0
                else:
                    acc, nov = _sim(pb, K, s0, cw[c], signed, clo[c], chi[c], cm[c], order, lanes, combine,
                                    reg, ex, st2)
                    acc_out[c, i, j] = acc
                    nov_out[c, i, j] = nov


# _registers and _adder are called, not inlined: each compiles once instead of once per call site, at no
# measurable cost (a call does a chunk or a row of work); their integer arguments are never literal
# constants, which would compile them again for each constant.
@nb.njit(cache=True)
def _registers(A, B, i, k0, kc, j0, L, r, ex, PP, EE, nt, signed, cw, cm, clo, chi, wact, nwa, sact, nsa, wcnt,
               sreg, scnt):
    """kc products (k0 ...) per column of row r: the exact sums ex[r] advance (EE keeps every one, PP the
    products), then each active configuration takes the kc additions with its register row in cache:
    wrap ones count the bucket changes, saturating ones run their register."""
    for j in range(nt):
        EE[0, j] = ex[r, j]
    for kk in range(kc):
        a = A[i, k0 + kk]
        b = B[k0 + kk]
        for j in range(nt):
            q = (a * b[j0 + j]) << L
            PP[kk, j] = q
            EE[kk + 1, j] = EE[kk, j] + q
    for j in range(nt):
        ex[r, j] = EE[kc, j]
    if kc == KC:                            # a full chunk: each column's register stays in a CPU register
        for t in range(nwa):
            c = wact[t]
            W = cw[c]
            h = (np.int64(1) << (W - 1)) if signed else np.int64(0)
            for j in range(nt):
                n = np.int64(0)
                prev = (EE[0, j] + h) >> W
                for kk in range(KC):
                    cur = (EE[kk + 1, j] + h) >> W
                    n += cur != prev
                    prev = cur
                wcnt[t, r, j] += n
        for t in range(nsa):
            c = sact[t]
            lo, hi = clo[c], chi[c]
            zero = cm[c] == SATURATE_ZERO
            for j in range(nt):
                v = sreg[t, r, j]
                n = np.int64(0)
                if zero:
                    for kk in range(KC):
                        s = v + PP[kk, j]
                        out = (s < lo) | (s > hi)
                        n += out
                        v = 0 if out else s
                else:
                    for kk in range(KC):
                        s = v + PP[kk, j]
                        x = min(max(s, lo), hi)
                        n += x != s
                        v = x
                sreg[t, r, j] = v
                scnt[t, r, j] += n
        return
    for t in range(nwa):
        c = wact[t]
        W = cw[c]
        h = (np.int64(1) << (W - 1)) if signed else np.int64(0)
        for kk in range(kc):
            for j in range(nt):
                wcnt[t, r, j] += ((EE[kk, j] + h) >> W) != ((EE[kk + 1, j] + h) >> W)
    for t in range(nsa):
        c = sact[t]
        lo, hi = clo[c], chi[c]
        if cm[c] == SATURATE_ZERO:
            for kk in range(kc):
                for j in range(nt):
                    s = sreg[t, r, j] + PP[kk, j]
                    out = (s < lo) | (s > hi)
                    scnt[t, r, j] += out
                    sreg[t, r, j] = 0 if out else s
        else:                               # SATURATE, SATURATE_SYMMETRIC: lo, hi say which
            for kk in range(kc):
                for j in range(nt):
                    s = sreg[t, r, j] + PP[kk, j]
                    v = min(max(s, lo), hi)
                    scnt[t, r, j] += v != s
                    sreg[t, r, j] = v


@nb.njit(cache=True)
def _adder(U, u, V, v, r, nt, signed, cw, cm, clo, chi, wact, nwa, sact, nsa, wcnt, RU, RV, scnt):
    """The register-plus-register adders of row r (lane combine): exact values U[u, r], V[v, r];
    wrap configurations count bucket(U + V) != bucket(U) + bucket(V), saturating ones add their
    registers RU[:, u, r] += RV[:, v, r] with the mode. U[u, r] += V[v, r] afterwards."""
    for t in range(nwa):
        c = wact[t]
        W = cw[c]
        for j in range(nt):
            x = U[u, r, j]
            y = V[v, r, j]
            wcnt[t, r, j] += _bucket(x + y, W, signed) != _bucket(x, W, signed) + _bucket(y, W, signed)
    for t in range(nsa):
        c = sact[t]
        lo, hi = clo[c], chi[c]
        if cm[c] == SATURATE_ZERO:
            for j in range(nt):
                s = RU[t, u, r, j] + RV[t, v, r, j]
                out = (s < lo) | (s > hi)
                scnt[t, r, j] += out
                RU[t, u, r, j] = 0 if out else s
        else:
            for j in range(nt):
                s = RU[t, u, r, j] + RV[t, v, r, j]
                x = min(max(s, lo), hi)
                scnt[t, r, j] += x != s
                RU[t, u, r, j] = x
    for j in range(nt):
        U[u, r, j] += V[v, r, j]


@nb.njit(cache=True, parallel=True)
def multi_gemm_blocks(A, B, init, L, order, lanes, combine, signed, cw, cm, clo, chi,
                      acc_out, nov_out, exact_out, max_out, min_out):
    """The sequential and chunked orders with products (a * b) << L, vectorised across output columns:
    blocks of RB rows x NT columns, parallel over blocks. A block first runs its exact sums (the
    extremes of every partial sum of the order), then, for the configurations whose range some partial
    sum of the block leaves, the registers (saturating modes) or the bucket counts (wrap). B is (K, N).
    The caller guarantees every exact partial sum below 2**62 in magnitude."""
    M, K = A.shape
    N = B.shape[1]
    nC = cw.shape[0]
    nbr = (M + RB - 1) // RB
    nbc = (N + NT - 1) // NT
    P = lanes if order == CHUNKED else 1
    C = (K + P - 1) // P
    TL = P if (order == CHUNKED and combine == 1) else 1     # lane results kept for a tree combine
    for blk in nb.prange(nbr * nbc):
        i0 = (blk // nbc) * RB
        j0 = (blk % nbc) * NT
        rows = min(i0 + RB, M) - i0
        nt = min(j0 + NT, N) - j0
        ex = np.empty((RB, NT), dtype=np.int64)      # lane (or only) exact sum
        CE = np.empty((TL, RB, NT), dtype=np.int64)  # combined exact sum / lane sums for the tree
        mx = np.empty((RB, NT), dtype=np.int64)
        mn = np.empty((RB, NT), dtype=np.int64)
        PP = np.empty((KC, NT), dtype=np.int64)          # a chunk of products
        EE = np.empty((KC + 1, NT), dtype=np.int64)      # the exact sums before and after each
        # ---- pass 1: exact sums and the extremes of every partial sum
        for r in range(rows):
            for j in range(nt):
                v = init[i0 + r, j0 + j]
                mx[r, j] = max(v, 0)
                mn[r, j] = min(v, 0)
        for l in range(P):
            for r in range(rows):
                for j in range(nt):
                    ex[r, j] = init[i0 + r, j0 + j] if l == 0 else 0
            for k in range(l * C, min(K, (l + 1) * C)):
                b = B[k]
                for r in range(rows):
                    a = A[i0 + r, k]
                    for j in range(nt):
                        e = ex[r, j] + ((a * b[j0 + j]) << L)
                        ex[r, j] = e
                        mx[r, j] = max(mx[r, j], e)
                        mn[r, j] = min(mn[r, j], e)
            for r in range(rows):
                for j in range(nt):
                    if TL > 1:
                        CE[l, r, j] = ex[r, j]
                    elif l == 0:
                        CE[0, r, j] = ex[r, j]
                    else:                   # sequential combine
                        e = CE[0, r, j] + ex[r, j]
                        CE[0, r, j] = e
                        mx[r, j] = max(mx[r, j], e)
                        mn[r, j] = min(mn[r, j], e)
        if TL > 1:                          # the exact tree over the lanes
            T = CE.copy()
            n = P
            while n > 1:
                for q in range(n // 2):
                    for r in range(rows):
                        for j in range(nt):
                            e = T[2 * q, r, j] + T[2 * q + 1, r, j]
                            T[q, r, j] = e
                            mx[r, j] = max(mx[r, j], e)
                            mn[r, j] = min(mn[r, j], e)
                if n % 2 == 1:
                    T[n // 2] = T[n - 1]
                n = (n + 1) // 2
            exact = T[0]
        else:
            exact = CE[0]
        # ---- which configurations leave their range somewhere in the block
        wact = np.empty(nC, dtype=np.int64)
        sact = np.empty(nC, dtype=np.int64)
        nwa = np.int64(0)       # not literal 0s: the helpers below compile for one signature
        nsa = np.int64(0)
        bmx = mx[0, 0]
        bmn = mn[0, 0]
        for r in range(rows):
            for j in range(nt):
                bmx = max(bmx, mx[r, j])
                bmn = min(bmn, mn[r, j])
        for c in range(nC):
            if bmn < clo[c] or bmx > chi[c]:
                if cm[c] == WRAP:
                    wact[nwa] = c
                    nwa += 1
                else:
                    sact[nsa] = c
                    nsa += 1
        for r in range(rows):
            for j in range(nt):
                i = i0 + r
                jj = j0 + j
                exact_out[i, jj] = exact[r, j]
                max_out[i, jj] = mx[r, j]
                min_out[i, jj] = mn[r, j]
                for c in range(nC):          # the clean result; active configurations overwrite it below
                    acc_out[c, i, jj] = exact[r, j]
                    nov_out[c, i, jj] = 0
        if nwa + nsa == 0:
            continue
        # ---- pass 2: the active configurations, all reading the same products
        wcnt = np.zeros((nwa, RB, NT), dtype=np.int64)
        scnt = np.zeros((nsa, RB, NT), dtype=np.int64)
        sreg = np.empty((nsa, RB, NT), dtype=np.int64)        # lane (or only) register
        LR = np.empty((nsa, TL, RB, NT), dtype=np.int64)      # combined register / lane registers (tree)
        for l in range(P):
            for r in range(rows):
                for j in range(nt):
                    v = init[i0 + r, j0 + j] if l == 0 else 0
                    ex[r, j] = v
                    for t in range(nsa):
                        sreg[t, r, j] = v
            k1 = min(K, (l + 1) * C)
            for k0 in range(l * C, k1, KC):
                kc = min(KC, k1 - k0)
                for r in range(rows):
                    _registers(A, B, i0 + r, k0, kc, j0, L, r, ex, PP, EE, nt, signed, cw, cm, clo, chi, wact, nwa,
                               sact, nsa, wcnt, sreg, scnt)
            ls = l if TL > 1 else 0
            if TL > 1 or l == 0:            # the lane's results (or lane 0's: the combine starts there)
                for r in range(rows):
                    for j in range(nt):
                        CE[ls, r, j] = ex[r, j]
                    for t in range(nsa):
                        for j in range(nt):
                            LR[t, ls, r, j] = sreg[t, r, j]
            else:                           # sequential combine: lane 0 + lane 1 + ...
                ex3 = ex.reshape((1, RB, NT))
                sreg4 = sreg.reshape((nsa, 1, RB, NT))
                for r in range(rows):
                    _adder(CE, np.int64(0), ex3, np.int64(0), r, nt, signed, cw, cm, clo, chi, wact, nwa, sact, nsa,
                           wcnt, LR, sreg4, scnt)
        if TL > 1:
            n = P
            while n > 1:
                for q in range(n // 2):
                    for r in range(rows):
                        _adder(CE, 2 * q, CE, 2 * q + 1, r, nt, signed, cw, cm, clo, chi, wact, nwa, sact, nsa,
                               wcnt, LR, LR, scnt)
                        for j in range(nt):
                            CE[q, r, j] = CE[2 * q, r, j]
                        for t in range(nsa):
                            for j in range(nt):
                                LR[t, q, r, j] = LR[t, 2 * q, r, j]
                if n % 2 == 1:
                    for r in range(rows):
                        for j in range(nt):
                            CE[n // 2, r, j] = CE[n - 1, r, j]
                        for t in range(nsa):
                            for j in range(nt):
                                LR[t, n // 2, r, j] = LR[t, n - 1, r, j]
                n = (n + 1) // 2
        for r in range(rows):
            i = i0 + r
            for t in range(nwa):
                c = wact[t]
                for j in range(nt):
                    acc_out[c, i, j0 + j] = wrap(exact[r, j], cw[c], signed)
                    nov_out[c, i, j0 + j] = wcnt[t, r, j]
            for t in range(nsa):
                c = sact[t]
                for j in range(nt):
                    acc_out[c, i, j0 + j] = LR[t, 0, r, j]
                    nov_out[c, i, j0 + j] = scnt[t, r, j]
