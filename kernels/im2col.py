"""im2col: the patch matrix that lowers a 2-D convolution to a GEMM, one row per output pixel."""
import numba as nb


@nb.njit(cache=True)
def unfold_into(xp, kh, kw, sh, sw, dh, dw, channels_last, out):
    """out[(n, oh, ow), col] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw] for the padded input xp (N, C, Hp, Wp),
    with col = (c, i, j) flattened c-major (channels_last=False: PyTorch's OIHW order) or (i, j, c) with c
    innermost (channels_last=True: the HWIO order). Any dtype; out has xp's dtype. One output row of
    pixels at a time, so its OW rows of ``out`` stay in cache while every column is filled."""
    N, C, Hp, Wp = xp.shape
    OH = (Hp - dh * (kh - 1) - 1) // sh + 1
    OW = (Wp - dw * (kw - 1) - 1) // sw + 1
    for n in range(N):
        for oh in range(OH):
            r0 = (n * OH + oh) * OW
            for c in range(C):
                for i in range(kh):
                    src = xp[n, c, oh * sh + i * dh]
                    for j in range(kw):
                        col = (i * kw + j) * C + c if channels_last else (c * kh + i) * kw + j
                        for ow in range(OW):
                            out[r0 + ow, col] = src[ow * sw + j * dw]
