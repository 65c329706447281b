"""Integer and float registers are separate types: every invalid combination is refused at construction
(one row each), and every way of building a register gets the hardware's defaults -- fixed point floor
and wrap, floating point half_even and ieee -- checked by what the register does, not only by its fields."""
import numpy as np
import pytest

from fxsim.datapath import (Accumulator, Datapath, FloatAccumulator, FloatProduct, IntAccumulator, IntProduct,
                            OutputStage, Order, Product, Requant, register_defaults)
from fxsim.errors import InvalidArgument, InvalidType
from fxsim.formats import Fixed
from fxsim.modes import Overflow, Rounding
from fxsim.ops.gemm import gemm

E = InvalidArgument
T = InvalidType


# ---- every invalid combination, one row each -------------------------------------------------------
@pytest.mark.parametrize("make,error,message", [
    # overflow modes of the other kind
    pytest.param(lambda: Accumulator("int16", overflow="ieee"), E,
                 r"accumulator overflow must be wrap, saturate, saturate_symmetric or saturate_zero for a "
                 r"fixed-point register \(int16\), got ieee", id="int-acc-ieee"),
    pytest.param(lambda: Accumulator("int16", overflow="error"), E, r"accumulator overflow must be wrap.* got error",
                 id="int-acc-error"),
    pytest.param(lambda: Accumulator("fp32", overflow="wrap"), E,
                 r"accumulator overflow must be ieee, saturate or error for a floating-point register \(fp32\), "
                 r"got wrap", id="float-acc-wrap"),
    pytest.param(lambda: Accumulator("bf16", overflow="saturate_symmetric"), E,
                 r"accumulator overflow must be ieee, saturate or error .* got saturate_symmetric", id="float-acc-satsym"),
    pytest.param(lambda: Accumulator("bf16", overflow="saturate_zero"), E, r"got saturate_zero", id="float-acc-satzero"),
    pytest.param(lambda: IntProduct("int12", overflow="ieee"), E,
                 r"product overflow must be wrap, saturate, saturate_symmetric or saturate_zero .* got ieee",
                 id="int-product-ieee"),
    pytest.param(lambda: FloatProduct("fp16", overflow="wrap"), E,
                 r"product overflow must be ieee, saturate or error for a floating-point register \(fp16\), got wrap",
                 id="float-product-wrap"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", product="fp16", product_overflow="wrap", accumulator="fp32"), E,
                 r"product overflow must be ieee, saturate or error", id="datapath-float-product-wrap"),
    # stochastic rounding: no fixed-point register has it
    pytest.param(lambda: Accumulator("int16", rounding="stochastic"), E,
                 r"accumulator rounding='stochastic' is not supported .* fixed-point register \(int16\).* use floor, "
                 r"ceil", id="int-acc-stochastic"),
    pytest.param(lambda: IntProduct("int12", rounding="stochastic"), E, r"product rounding='stochastic' is not supported",
                 id="int-product-stochastic"),
    pytest.param(lambda: Datapath(product="int12", product_rounding="stochastic"), E,
                 r"product rounding='stochastic' is not supported", id="datapath-int-product-stochastic"),
    # float-only options on fixed-point registers
    pytest.param(lambda: Accumulator("int32", random_bits=8), E,
                 r"accumulator random_bits=8 does not apply to a fixed-point accumulator \(int32\)", id="int-acc-random-bits"),
    pytest.param(lambda: Accumulator("int32", seed=3), E, r"accumulator seed=3 does not apply", id="int-acc-seed"),
    pytest.param(lambda: Accumulator("int32", flush_subnormals=True), E, r"flush_subnormals=True does not apply",
                 id="int-acc-flush"),
    pytest.param(lambda: IntAccumulator("int32", random_bits=8), TypeError, r"random_bits", id="int-acc-type-random-bits"),
    pytest.param(lambda: Product("int12", random_bits=4), E,
                 r"product random_bits=4 does not apply to a fixed-point product register \(int12\)",
                 id="int-product-random-bits"),
    pytest.param(lambda: Product("int12", seed=4), E, r"product seed=4 does not apply", id="int-product-seed"),
    pytest.param(lambda: Datapath(product="int12", product_random_bits=4), E,
                 r"product random_bits=4 does not apply to a fixed-point product register", id="datapath-int-product-bits"),
    pytest.param(lambda: Datapath(fused=True), E, r"fused=True applies to float accumulators", id="fused-int"),
    # stochastic options without stochastic rounding
    pytest.param(lambda: Accumulator("fp32", random_bits=8), E,
                 r"accumulator random_bits=8 applies to stochastic rounding only, and this fp32 register rounds "
                 r"half_even; give rounding='stochastic' or drop random_bits", id="float-acc-bits-half-even"),
    pytest.param(lambda: Accumulator("bf16", rounding="floor", seed=3), E,
                 r"accumulator seed=3 applies to stochastic rounding only.* rounds floor", id="float-acc-seed-floor"),
    pytest.param(lambda: FloatProduct("fp16", random_bits=4), E,
                 r"product random_bits=4 applies to stochastic rounding only", id="float-product-bits"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", product="fp16", product_seed=5, accumulator="fp32"), E,
                 r"product seed=5 applies to stochastic rounding only", id="datapath-float-product-seed"),
    # values out of range, wrong types
    pytest.param(lambda: Accumulator("fp32", rounding="stochastic", random_bits=0), E,
                 r"accumulator random_bits must be an integer in 1..62", id="float-acc-bits-range"),
    pytest.param(lambda: FloatProduct("fp16", rounding="stochastic", seed=-1), E,
                 r"product seed must be an integer in 0..", id="float-product-seed-range"),
    pytest.param(lambda: FloatAccumulator("fp32", flush_subnormals="yes"), T,
                 r"accumulator flush_subnormals must be true or false", id="float-acc-flush-string"),
    pytest.param(lambda: Accumulator("fp32", rounding="stochastic", seed=1.5), T, r"accumulator seed must be an integer",
                 id="float-acc-seed-float"),
    pytest.param(lambda: Datapath(accumulator={"format": "int16"}), T, r"accumulator must be an fxsim Accumulator",
                 id="datapath-acc-dict"),
    # a format of the other kind in a typed register
    pytest.param(lambda: IntAccumulator("fp32"), E,
                 r"accumulator format fp32 is floating-point; IntAccumulator holds a fixed-point format: use "
                 r"FloatAccumulator, or Accumulator\(\.\.\.\)", id="int-acc-float-format"),
    pytest.param(lambda: FloatAccumulator("int16"), E,
                 r"accumulator format int16 is fixed-point; FloatAccumulator holds a floating-point format",
                 id="float-acc-int-format"),
    pytest.param(lambda: IntProduct("fp16"), E, r"product format fp16 is floating-point; IntProduct holds",
                 id="int-product-float-format"),
    pytest.param(lambda: FloatProduct("int12"), E, r"product format int12 is fixed-point; FloatProduct holds",
                 id="float-product-int-format"),
    # product options without a product register, or given twice
    pytest.param(lambda: Datapath(product_rounding="floor"), E,
                 r"product_rounding='floor' applies to a product register, and this datapath has none "
                 r"\(product=None: exact products\); give product= or drop product_rounding", id="no-product-rounding"),
    pytest.param(lambda: Datapath(product_overflow="saturate"), E, r"product_overflow='saturate' applies to a product "
                 r"register", id="no-product-overflow"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", accumulator="fp32", product_random_bits=4), E,
                 r"product_random_bits=4 applies to a product register", id="no-product-random-bits"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", accumulator="fp32", product_seed=4), E,
                 r"product_seed=4 applies to a product register", id="no-product-seed"),
    pytest.param(lambda: Datapath(product_rounding="sideways"), E, r"product_rounding", id="no-product-bad-mode"),
    pytest.param(lambda: Datapath(product=IntProduct("int12"), product_rounding="floor"), E,
                 r"product_rounding='floor' given with the product register product int12 \(floor, wrap\); state",
                 id="product-twice"),
    # registers that do not fit together
    pytest.param(lambda: Datapath(product="fp16", accumulator="int32"), E,
                 r"product register fp16 is floating-point and the accumulator int32 fixed-point", id="float-product-int-acc"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", product="int12", accumulator="fp32"), E,
                 r"product register int12 is fixed-point and the accumulator fp32 floating-point", id="int-product-float-acc"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", product=Fixed(12, 6), accumulator=Fixed(32, 12)), E,
                 r"a fixed-point product register \(Q5.6\) takes fixed-point operands, got a=e4m3", id="int-product-float-ops"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", product="fp16", accumulator="fp32", fused=True), E,
                 r"fused=True means the product is not rounded, but product=fp16 was given", id="fused-with-product"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", product=FloatProduct("fp16", rounding="stochastic", seed=1),
                                  accumulator=Accumulator("fp32", rounding="stochastic", seed=2)), E,
                 r"accumulator seed=2 and product_seed=1 differ; the datapath has one generator", id="two-seeds"),
    pytest.param(lambda: Datapath(a="e4m3", b="e4m3", accumulator="fp32", order=Order("tree", level_bits=(20,))), E,
                 r"order level_bits set register widths of a fixed-point adder tree; a float accumulator's \(fp32\)",
                 id="float-acc-level-bits"),
    # requantization: rounding is an option of the kinds that take one
    pytest.param(lambda: Requant("float32", scale=0.5, rounding="floor"), E,
                 r"requant rounding='floor' does not apply to kind 'float32'.* applies to kinds 'dyadic' and 'shift'",
                 id="requant-float32-rounding"),
    pytest.param(lambda: Requant("gemmlowp", 2 ** 30, 0, rounding="half_even"), E,
                 r"requant rounding='half_even' does not apply to kind 'gemmlowp'", id="requant-gemmlowp-rounding"),
    # the output register's overflow without an output register
    pytest.param(lambda: OutputStage(overflow="wrap"), E,
                 r"output overflow 'wrap' applies to an output register, and this stage has none \(fmt=None: the "
                 r"accumulator is the output\); give fmt=\.\.\. or leave overflow unset", id="output-overflow-no-format"),
    pytest.param(lambda: OutputStage(requant=Requant.dyadic(3, 2), overflow="saturate"), E,
                 r"output overflow 'saturate' applies to an output register", id="output-overflow-requant-no-format"),
])
def test_invalid_register_combinations_cannot_be_constructed(make, error, message):
    with pytest.raises(error, match=message):
        make()


# ---- the hardware's defaults, whatever the way in ----------------------------------------------------
def _spec(acc_fmt, **dp):
    from fxsim.workflows.spec import build_datapath
    return build_datapath({"accumulator": {"format": acc_fmt}, **dp}, {})


def _recipe(which):
    from fxsim.training.recipes import Recipe, TensorQuantizer
    r = Recipe("t", "-", "-", weights=TensorQuantizer("int8"), activations=TensorQuantizer("int8"),
               gradients=TensorQuantizer("e5m2"), forward_acc="int24", backward_acc="fp16")
    return r.datapath(which).accumulator


def _batchnorm(name):
    from fxsim.formats import parse_format
    from fxsim.ops.norm import BatchNormConfig, _accumulator, _sum_accumulator
    cfg = BatchNormConfig()
    return _sum_accumulator(cfg, parse_format(cfg.x_fmt)) if name == "acc" else _accumulator(getattr(cfg, name))


def _mx(accumulator):
    from fxsim.engines.block import mx_gemm
    kw = {} if accumulator is None else {"accumulator": accumulator}
    return mx_gemm(np.ones((1, 32)), np.ones((32, 1)), **kw).datapath.accumulator


FIXED = "fixed"
FLOAT = "float"
PATHS = [
    ("Accumulator(int24)", lambda: Accumulator("int24"), FIXED),
    ("Accumulator(bf16)", lambda: Accumulator("bf16"), FLOAT),
    ("IntAccumulator()", lambda: IntAccumulator(), FIXED),
    ("FloatAccumulator()", lambda: FloatAccumulator(), FLOAT),
    ("Datapath()", lambda: Datapath().accumulator, FIXED),
    ("Datapath(accumulator='fp16')", lambda: Datapath(a="e4m3", b="e4m3", accumulator="fp16").accumulator, FLOAT),
    ("Datapath(product='int12')", lambda: Datapath(product="int12").product_register, FIXED),
    ("Datapath(product='fp16')", lambda: Datapath(a="e4m3", b="e4m3", product="fp16", accumulator="fp32").product_register,
     FLOAT),
    ("Product(int12)", lambda: Product("int12"), FIXED),
    ("IntProduct(int12)", lambda: IntProduct("int12"), FIXED),
    ("FloatProduct(bf16)", lambda: FloatProduct("bf16"), FLOAT),
    ("spec accumulator int24", lambda: _spec("int24").accumulator, FIXED),
    ("spec accumulator fp32", lambda: _spec("fp32").accumulator, FLOAT),
    ("spec default accumulator", lambda: _spec("int32").accumulator, FIXED),
    ("spec product int12", lambda: _spec("int32", product="int12").product_register, FIXED),
    ("spec product fp16", lambda: _spec("fp32", a="e4m3", b="e4m3", product="fp16").product_register, FLOAT),
    ("recipe forward_acc int24", lambda: _recipe("forward"), FIXED),
    ("recipe backward_acc fp16", lambda: _recipe("dx"), FLOAT),
    ("batch norm acc (int40)", lambda: _batchnorm("acc"), FIXED),
    ("batch norm stat_acc (fp32)", lambda: _batchnorm("stat_acc"), FLOAT),
    ("batch norm grad_acc (fp32)", lambda: _batchnorm("grad_acc"), FLOAT),
    ("mx default accumulator", lambda: _mx(None), FLOAT),
    ("mx accumulator='fp16'", lambda: _mx("fp16"), FLOAT),
]


def _fixed_behaviour(reg):
    """Hardware facts, worked by hand: an int8 adder wraps 100 + 100 to -56; dropping the LSB of a
    product -0.5 (floor, the wires cut) gives -1."""
    acc = IntAccumulator("int8", overflow=reg.overflow, rounding=reg.rounding)
    wrap = gemm(np.array([[100, 100]]), np.ones((2, 1)), Datapath(accumulator=acc)).acc[0, 0]
    align = gemm(np.array([[-0.5]]), np.ones((1, 1)), Datapath(a=Fixed(8, 1), accumulator=acc)).acc[0, 0]
    return int(wrap), int(align)


def _float_behaviour(reg):
    """Hardware facts, worked by hand in FP16 (ulp of 1 is 2**-10): 1 + 2**-11 is a tie that round-to-
    nearest-even takes down to 1, 1 + 3*2**-11 one it takes up to 1 + 2**-9; 60000 + 60000 overflows to
    inf."""
    acc = FloatAccumulator("fp16", overflow=reg.overflow, rounding=reg.rounding)
    dp = Datapath(a="fp16", b="fp16", accumulator=acc)
    ties = gemm(np.array([[1.0, 2.0 ** -11], [1.0, 3 * 2.0 ** -11]]), np.ones((2, 1)), dp).values[:, 0]
    big = gemm(np.array([[60000.0, 60000.0]]), np.ones((2, 1)), dp).values[0, 0]
    return float(ties[0]), float(ties[1]), float(big)


@pytest.mark.parametrize("make,kind", [pytest.param(m, k, id=name) for name, m, k in PATHS])
def test_every_way_of_building_a_register_gets_the_hardware_defaults(make, kind):
    reg = make()
    assert reg.kind == kind and reg.is_float == (kind == FLOAT)
    if kind == FIXED:
        assert isinstance(reg, (IntAccumulator, IntProduct))
        assert (reg.rounding, reg.overflow) == (Rounding.FLOOR, Overflow.WRAP)
        assert _fixed_behaviour(reg) == (-56, -1)
    else:
        assert isinstance(reg, (FloatAccumulator, FloatProduct))
        assert (reg.rounding, reg.overflow) == (Rounding.HALF_EVEN, Overflow.IEEE)
        assert reg.random_bits is None and reg.seed is None
        assert _float_behaviour(reg) == (1.0, 1.0 + 2.0 ** -9, np.inf)
    assert (reg.rounding, reg.overflow) == register_defaults(reg.fmt) == type(reg).defaults()


def test_the_behaviour_checks_tell_the_defaults_from_their_neighbours():
    """The checks above fail for a register that saturates, truncates toward zero or rounds half up."""
    assert _fixed_behaviour(IntAccumulator("int8", overflow="saturate")) == (127, -1)
    assert _fixed_behaviour(IntAccumulator("int8", rounding="toward_zero")) == (-56, 0)
    assert _float_behaviour(FloatAccumulator("fp16", rounding="half_up")) == (1.0 + 2.0 ** -10, 1.0 + 2.0 ** -9, np.inf)
    assert _float_behaviour(FloatAccumulator("fp16", rounding="half_down")) == (1.0, 1.0 + 2.0 ** -10, np.inf)
    assert _float_behaviour(FloatAccumulator("fp16", overflow="saturate")) == (1.0, 1.0 + 2.0 ** -9, 65504.0)


# ---- the factory, the common base, the attributes readers use ----------------------------------------
def test_the_factory_builds_the_type_of_the_format_and_both_are_accumulators():
    i, f = Accumulator("int16", overflow="saturate"), Accumulator("fp32", rounding="stochastic", random_bits=9, seed=4)
    assert type(i) is IntAccumulator and type(f) is FloatAccumulator
    assert isinstance(i, Accumulator) and isinstance(f, Accumulator)
    assert i == IntAccumulator("int16", overflow="saturate") and hash(i) == hash(IntAccumulator("int16", "saturate"))
    assert f == FloatAccumulator("fp32", rounding="stochastic", random_bits=9, seed=4)
    # float-only fields read as unset on an integer accumulator, so readers need not ask the kind first
    assert (i.random_bits, i.seed, i.flush_subnormals) == (None, None, False)
    assert (i.bits, i.frac, i.signed) == (16, 0, True)
    assert type(Product("fp16")) is FloatProduct and type(Product("int12")) is IntProduct


def test_a_product_register_object_and_its_flat_spelling_are_the_same_datapath():
    a = Datapath(a="e4m3", b="e4m3", accumulator="fp32",
                 product=FloatProduct("fp16", rounding="stochastic", random_bits=6, seed=11))
    b = Datapath(a="e4m3", b="e4m3", accumulator="fp32", product="fp16", product_rounding="stochastic",
                 product_random_bits=6, product_seed=11)
    assert a == b and a.product == b.product and a.product_register == FloatProduct("fp16", None, "stochastic", 6, 11)
    assert a.random_seed == 11           # the product's seed drives the datapath's one generator
    assert "product fp16 (stochastic, 6 random bits, ieee)" in str(a)
    # the accumulator's seed wins where it rounds stochastically too; the same seed twice is fine
    c = Datapath(a="e4m3", b="e4m3", accumulator=Accumulator("fp32", rounding="stochastic", seed=3),
                 product=FloatProduct("fp16", rounding="stochastic", seed=3))
    assert c.random_seed == 3


def test_requant_kinds_with_their_own_rounding_keep_it():
    assert Requant.gemmlowp(2 ** 30, 0) == Requant("gemmlowp", 2 ** 30, 0)
    assert Requant.float32(0.5) == Requant("float32", scale=0.5)
    assert Requant("dyadic", 3, 2).rounding == Rounding.HALF_EVEN == Requant("shift", shift=2).rounding


def test_replacing_the_product_starts_from_the_new_registers_defaults():
    dp = Datapath(product="int12", product_rounding="half_even", product_overflow="saturate")
    assert dp.replace(product=None).product_register is None
    assert dp.replace(product="int10").product_register == IntProduct("int10")
    kept = dp.replace(a="int4")
    assert kept.product_register == IntProduct("int12", rounding="half_even", overflow="saturate")


def test_the_seed_of_a_stochastic_product_reaches_the_engine():
    """Two runs with the same product seed agree; another seed gives other bits (the product rounds
    stochastically, the accumulator to nearest even)."""
    rng = np.random.default_rng(0)
    from fxsim.quantize import quantize
    A = quantize(rng.normal(size=(4, 16)) * 3, "e4m3", overflow="saturate")
    B = quantize(rng.normal(size=(16, 4)) * 3, "e4m3", overflow="saturate")

    def run(seed):
        return gemm(A, B, Datapath(a="e4m3", b="e4m3", accumulator="fp32",
                                   product=FloatProduct("e5m2", rounding="stochastic", random_bits=4, seed=seed))).values
    assert np.array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
