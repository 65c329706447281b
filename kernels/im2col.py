"""im2col: the patch matrix that lowers a 2-D convolution to a GEMM, one row per output pixel."""
import numba as nb


@nb.njit(cache=True, nogil=True)
def unfold_into(x, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW, channels_last, pad, offset, out):
    """out[(n, oh, ow), col] = x[n, c, h, w] - offset with h = oh*sh + i*dh - pt, w = ow*sw + j*dw - pl,
    and ``pad`` where (h, w) falls outside x (N, C, H, W) (the padding: ``pt`` rows above, ``pl`` columns
    left; the output size OH x OW fixes the padding below and right). col = (c, i, j) flattened c-major
    (channels_last=False: PyTorch's OIHW order) or (i, j, c) with c innermost (channels_last=True: the HWIO
    order). Any dtypes; each value is converted to out's dtype (the caller chooses one that holds every
    x - offset and ``pad`` exactly). One output row of pixels at a time, so its OW rows of ``out`` stay in
    cache while every column is filled."""
    N, C, H, W = x.shape
    for n in range(N):
        for oh in range(OH):
            r0 = (n * OH + oh) * OW
            for c in range(C):
                for i in range(kh):
                    h = oh * sh + i * dh - pt
                    for j in range(kw):
                        col = (i * kw + j) * C + c if channels_last else (c * kh + i) * kw + j
                        if h < 0 or h >= H:
                            for ow in range(OW):
                                out[r0 + ow, col] = pad
                            continue
                        # the output columns whose input column w = ow*sw + j*dw - pl lies in [0, W)
                        w0 = j * dw - pl
                        lo = 0 if w0 >= 0 else (-w0 + sw - 1) // sw
                        hi = 0 if W - 1 - w0 < 0 else (W - 1 - w0) // sw + 1
                        if hi > OW:
                            hi = OW
                        if lo > hi:
                            lo = hi
                        src = x[n, c, h]
                        for ow in range(lo):
                            out[r0 + ow, col] = pad
                        for ow in range(lo, hi):
                            out[r0 + ow, col] = src[ow * sw + w0] - offset
                        for ow in range(hi, OW):
                            out[r0 + ow, col] = pad
