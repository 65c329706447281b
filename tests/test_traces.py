"""Per-cycle traces in their documented order (docs/golden-vectors.md, "Traces"), for every datapath order
and for conv2d, against a plain-Python statement of that order (Python ints, literal loops)."""
import numpy as np
from hypothesis import given, settings, strategies as st

from fxsim.datapath import Accumulator, Datapath, Order
from fxsim.ops.conv import conv2d
from fxsim.ops.gemm import gemm
from tests.reference_int_datapath import products, register


def reference_trace(a_row, b_col, init, dp):
    """The register values of one output, in the documented order:
    sequential: the preload, then the register after every addition;
    chunked: for each cycle c, every lane's register (lane 0 first) after adding its product l*C + c
      (a lane past the end of K repeats its value); then the combine: lane 0 after adding lane 1, 2, ...
      (sequential) or every adder of the combine tree, level by level;
    tree: every adder's output, level by level, node order; then the root added to the preload."""
    fmt = dp.accumulator.fmt
    W, sg, ov = fmt.bits, fmt.signed, dp.accumulator.overflow
    ps = products(a_row, b_col, dp)
    K = len(ps)
    out = []

    def tree_levels(nodes, level_bits):
        level = 0
        while len(nodes) > 1:
            width = level_bits[level] if level < len(level_bits) else W
            nxt = [register(nodes[2 * q] + nodes[2 * q + 1], width, sg, ov)[0] for q in range(len(nodes) // 2)]
            out.extend(nxt)
            if len(nodes) % 2:
                nxt.append(nodes[-1])
            nodes = nxt
            level += 1
        return nodes[0]

    kind = dp.order.kind
    if kind == "sequential":
        acc = init
        out.append(acc)
        for p in ps:
            acc = register(acc + p, W, sg, ov)[0]
            out.append(acc)
        return out
    if kind == "chunked":
        P = dp.order.lanes
        C = -(-K // P)
        lanes = [init] + [0] * (P - 1)
        for c in range(C):
            for lane in range(P):
                k = lane * C + c
                if k < K:
                    lanes[lane] = register(lanes[lane] + ps[k], W, sg, ov)[0]
                out.append(lanes[lane])
        if dp.order.combine == "sequential":
            acc = lanes[0]
            for lane in range(1, P):
                acc = register(acc + lanes[lane], W, sg, ov)[0]
                out.append(acc)
        else:
            tree_levels(lanes, ())
        return out
    root = tree_levels(ps, dp.order.level_bits or ())
    out.append(register(init + root, W, sg, ov)[0])
    return out


ORDERS = st.sampled_from([Order("sequential"), Order("tree"), Order("tree", level_bits=(9, 10)),
                          Order("chunked", lanes=2), Order("chunked", lanes=3, combine="tree"),
                          Order("chunked", lanes=5, combine="sequential")])


@settings(max_examples=40, deadline=None)
@given(order=ORDERS, K=st.integers(1, 17), acc_bits=st.integers(8, 14),
       ovf=st.sampled_from(["wrap", "saturate", "saturate_symmetric", "saturate_zero"]), seed=st.integers(0, 2 ** 16))
def test_gemm_traces_follow_the_documented_order(order, K, acc_bits, ovf, seed):
    rng = np.random.default_rng(seed)
    A = rng.integers(-128, 128, size=(2, K))
    B = rng.integers(-128, 128, size=(K, 3))
    bias = rng.integers(-60, 60, size=3).astype(np.float64)
    dp = Datapath(a="int8", b="int8", accumulator=Accumulator(f"int{acc_bits}", overflow=ovf), order=order)
    res = gemm(A, B, dp, bias=bias, trace=[(1, 2), (0, 0)])
    for (i, j) in ((1, 2), (0, 0)):
        want = reference_trace(A[i].tolist(), B[:, j].tolist(), int(bias[j]), dp)
        assert res.traces[(i, j)].tolist() == want
        assert want[-1] == res.acc[i, j]                  # the trace ends on the accumulator


def _patch(x, w, n, o, oh, ow, stride, pad, dil, groups, zp):
    """Plain-Python im2col of one output in PyTorch's (c, kh, kw) order: (inputs, weights)."""
    _, C, H, W = x.shape
    O, CG, KH, KW = w.shape
    g = o // (O // groups)
    xs, ws = [], []
    for c in range(CG):
        for kh in range(KH):
            for kw in range(KW):
                ih, iw = oh * stride - pad + kh * dil, ow * stride - pad + kw * dil
                inside = 0 <= ih < H and 0 <= iw < W
                xs.append(int(x[n, g * CG + c, ih, iw]) if inside else zp)
                ws.append(int(w[o, c, kh, kw]))
    return xs, ws


@settings(max_examples=15, deadline=None)
@given(order=ORDERS, seed=st.integers(0, 2 ** 16), groups=st.sampled_from([1, 2]), stride=st.integers(1, 2),
       pad=st.integers(0, 1), dil=st.integers(1, 2))
def test_conv2d_traces_are_the_traces_of_the_exported_patch_order(order, seed, groups, stride, pad, dil):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(2, 4, 5, 5))
    w = rng.integers(-128, 128, size=(4, 4 // groups, 2, 2))
    bias = rng.integers(-300, 300, size=4).astype(np.float64)
    dp = Datapath(a="uint8", b="int8", a_zero_point=100, accumulator=Accumulator("int12", overflow="saturate"),
                  order=order)
    r0 = conv2d(x, w, dp, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias)
    _, _, OH, OW = r0.acc.shape
    outs = [(1, 3, OH - 1, OW - 1), (0, 1, 0, OW // 2)]
    res = conv2d(x, w, dp, stride=stride, padding=pad, dilation=dil, groups=groups, bias=bias, trace=outs)
    for (n, o, oh, ow) in outs:
        xs, ws = _patch(x, w, n, o, oh, ow, stride, pad, dil, groups, 100)
        want = reference_trace(xs, ws, int(bias[o]), dp)
        assert res.traces[(n, o, oh, ow)].tolist() == want
    assert np.array_equal(res.acc, r0.acc)     # tracing changes nothing
