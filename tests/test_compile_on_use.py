"""Compile only what a datapath uses, one signature per kernel, and the first-use notice."""
import io

import numba as nb
import numpy as np

from fxsim._kernels import float_accum as FK
from fxsim._kernels import float_codes as FC
from fxsim._kernels import float_vec as FV
from fxsim.datapath import Accumulator, Datapath
from fxsim.engines.floating import choose_float_path, float_gemm
from fxsim.formats import E4M3, FP16
from fxsim.quantize import quantize
from fxsim.runtime import compiling


def _signatures(kernel):
    return len(kernel.signatures)


def test_a_datapath_compiles_its_orders_kernels_once_for_every_input_layout():
    rng = np.random.default_rng(0)
    A = quantize(rng.normal(size=(6, 9)) * 4, E4M3)
    B = quantize(rng.normal(size=(9, 5)) * 4, E4M3)
    dp = Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP16, rounding="toward_zero"))
    assert choose_float_path(dp) == "general-vector"
    others = {k: _signatures(k) for k in (FV.gen_chunked, FV.gen_tree, FK.outputs_chunked, FK.outputs_tree)}
    ref = float_gemm(A, B, dp, trace=(1, 2))
    ro = A.copy()
    ro.flags.writeable = False
    strided = np.asfortranarray(B)
    bias = quantize(rng.normal(size=(6, 5)), FP16)
    bias.flags.writeable = False
    again = float_gemm(ro, strided, dp, trace=[(0, 0)])
    float_gemm(A, B, dp, bias=bias)
    float_gemm(A, B, Datapath(a=E4M3, b=E4M3, bias_preload=True, accumulator=Accumulator(FP16, rounding="toward_zero")),
               bias=bias)
    assert np.array_equal(ref.values.view(np.int64), again.values.view(np.int64))
    assert _signatures(FV.gen_seq) == 1 and _signatures(FK.outputs_seq) == 1 and _signatures(FC.float_codes) == 1
    assert {k: _signatures(k) for k in others} == others       # the other orders were not compiled


def test_the_notice_is_one_line_once_and_only_when_switched_on(monkeypatch):
    @nb.njit
    def fresh(x):
        return x + 1

    assert compiling.will_compile(fresh)
    monkeypatch.setattr(compiling, "_stream", None)
    monkeypatch.setattr(compiling, "_said", False)
    assert compiling.notice_first_use(fresh) is fresh          # library use: silent
    buf = io.StringIO()
    compiling.announce_compiles(buf)
    compiling.notice_first_use(fresh)
    compiling.notice_first_use(fresh)
    assert buf.getvalue() == compiling.MESSAGE + "\n"
    fresh(1)
    assert not compiling.will_compile(fresh)                    # compiled now: nothing to announce


def test_a_cached_kernel_is_not_announced(monkeypatch):
    float_gemm(np.ones((2, 2)), np.ones((2, 2)), Datapath(a=E4M3, b=E4M3, accumulator=Accumulator(FP16)))
    assert not compiling.will_compile(FC.float_codes)
