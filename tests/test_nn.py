"""The layer API: with lossless formats every gradient equals the float64 gradient exactly; the float64
path equals finite differences; low-precision layers report their statistics and still learn."""
import numpy as np
import pytest

from fxsim.training.layers import (SGD, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential,
                      softmax_cross_entropy)
from fxsim.training.recipes import Recipe, TensorQuantizer, get_recipe
from tests.reference_training import loss_and_finite_difference

# 16-bit integer tensors with power-of-two scales and 63-bit accumulators: lossless for the dyadic values below
LOSSLESS = Recipe("lossless", "-", "int16 everywhere, wide accumulators", weights=TensorQuantizer("int16"),
                  activations=TensorQuantizer("int16"), gradients=TensorQuantizer("int16"),
                  forward_acc="int63", backward_acc="int63", master=None)


def _model(rng, pool, bn=False):
    layers = [Conv2d(2, 3, 3, padding=1, rng=rng)] + ([BatchNorm2d(3)] if bn else []) + \
             [ReLU(), pool(2), Flatten(), Linear(12, 4, rng=rng)]
    return Sequential(layers)


def _grads(model):
    out = {}
    for i, layer in enumerate(model.layers):
        for name in getattr(layer, "params", ()):
            out[(i, name)] = getattr(layer, "d" + name)
    return out


@pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lossless_formats_give_exactly_the_float64_gradients(pool, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, (3, 2, 4, 4)).astype(float)
    D = rng.integers(-5, 6, (3, 4)).astype(float)          # L = sum(out * D): dL/dout = D
    results = {}
    for recipe in (get_recipe("float64"), LOSSLESS):
        m = _model(np.random.default_rng(seed), pool)
        for layer in m.layers:          # dyadic weights with few bits: every product and sum is exact
            if hasattr(layer, "W"):
                layer.W = np.round(layer.W * 8) / 8
        m.configure(recipe, seed=0)
        out = m.forward(x)
        m.backward(D)
        results[recipe.name] = (out, _grads(m), m.stats())
    out64, g64, _ = results["float64"]
    outq, gq, stats = results["lossless"]
    assert np.array_equal(out64, outq)
    assert g64.keys() == gq.keys()
    for k in g64:
        assert np.array_equal(g64[k], gq[k]), k
    assert any(np.any(g != 0) for g in gq.values())
    for layer_stats in stats.values():
        assert all(v == 0 for v in layer_stats.values()), stats


@pytest.mark.parametrize("pool", [MaxPool2d, AvgPool2d])
def test_float64_backward_equals_finite_differences(pool):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (3, 2, 4, 4))
    D = rng.normal(0, 1, (3, 4))
    m = _model(np.random.default_rng(7), pool, bn=True).configure(get_recipe("float64"))
    m.layers[1].gamma = rng.normal(1, 0.3, 3)
    m.layers[1].beta = rng.normal(0, 0.3, 3)

    def loss():
        return float(np.sum(m.forward(x) * D))

    loss()
    m.backward(D)
    grads = _grads(m)
    for (i, name), g in grads.items():
        fd = loss_and_finite_difference(loss, getattr(m.layers[i], name))
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7, err_msg=f"layer {i} {name}")


def test_softmax_cross_entropy_gradient_by_hand():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    loss, g = softmax_cross_entropy(logits, np.array([0, 1]))
    assert loss == pytest.approx((np.log(2) + np.log(4)) / 2)
    np.testing.assert_allclose(g, [[-0.25, 0.25], [0.375, -0.375]])


def test_sgd_momentum_by_hand_and_master_weights_rounded_to_their_format():
    lin = Linear(1, 1)
    m = Sequential([lin]).configure(Recipe("m", "-", "-", gradients=TensorQuantizer("int8"), master="bf16"))
    opt = SGD(m, lr=0.5, momentum=0.5)
    lin.W, lin.b = np.array([[1.0]]), np.array([0.0])
    for _ in range(2):
        lin.dW, lin.db = np.array([[2.0 ** -9]]), np.array([1.0])
        opt.step()
    # v1 = g, v2 = 1.5 g: W = 1 - 0.5 * 2^-9 rounds to bf16 (8 significant bits) = 1, then again 1
    assert lin.W[0, 0] == 1.0
    assert lin.b[0] == -0.5 - 0.75


@pytest.mark.slow     # trains a small network (about 11 s)
def test_low_precision_training_learns_and_reports_statistics():
    from fxsim.training.demo import load_data, train
    data = load_data()
    acc64, _, _, _ = train("float64", epochs=2, n_train=600, lr=0.1, data=data)
    accq, losses, stats, _ = train("luq", epochs=2, n_train=600, lr=0.1, data=data)
    assert acc64 > 0.7 and accq > 0.6            # chance is 0.1; measured 0.85 and 0.73
    assert losses[-1] < losses[0]
    assert stats["4:Linear"]["gradient_underflow_to_zero"] > 0
    assert set(stats["0:Conv2d"]) >= {"forward_overflows", "dw_overflows"}


def test_narrow_accumulators_show_in_the_overflow_statistics():
    r = Recipe("narrow", "-", "-", weights=TensorQuantizer("int8"), activations=TensorQuantizer("int8"),
               gradients=TensorQuantizer("int8"), forward_acc="int12", backward_acc="int12")
    rng = np.random.default_rng(0)
    m = Sequential([Linear(64, 4, rng=rng)]).configure(r)
    m.forward(rng.normal(0, 1, (8, 64)) + 3)
    m.backward(rng.normal(0, 1, (8, 4)))
    st = m.stats()["0:Linear"]
    assert st["forward_overflows"] > 0 and st["dw_overflows"] > 0


def test_batchnorm_layer_in_low_precision_stays_close_to_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (6, 2, 4, 4))
    labels = rng.integers(0, 3, 6)
    grads = {}
    for name in ("float64", "hfp8"):
        r = np.random.default_rng(1)
        m = Sequential([Conv2d(2, 3, 3, padding=1, rng=r), BatchNorm2d(3), ReLU(), Flatten(), Linear(48, 3, rng=r)])
        m.configure(get_recipe(name), seed=0)
        loss, g = softmax_cross_entropy(m.forward(x), labels)
        m.backward(g)
        grads[name] = m.layers[1].dgamma
    assert np.all(np.isfinite(grads["hfp8"]))
    assert np.max(np.abs(grads["hfp8"] - grads["float64"])) < 0.1 * np.max(np.abs(grads["float64"])) + 1e-3


def test_gradient_saturations_are_counted_when_the_alpha_rule_puts_the_top_level_below_the_maximum():
    from fxsim.training.recipes import LogQuantizer
    r = Recipe("paper-alpha", "-", "-", weights=TensorQuantizer("int4"), activations=TensorQuantizer("int4"),
               gradients=LogQuantizer(levels=7, alpha="paper"))
    rng = np.random.default_rng(0)
    m = Sequential([Linear(8, 4, rng=rng)]).configure(r)
    m.forward(rng.normal(0, 1, (16, 8)))
    dy = rng.normal(0, 1, (16, 4))
    m.backward(dy)
    top = np.max(np.abs(dy)) / 4                     # alpha = max/256, top level 64 alpha = max/4
    assert m.stats()["0:Linear"]["gradient_saturations"] == np.count_nonzero(np.abs(dy) > top) > 0
    m2 = Sequential([Linear(8, 4, rng=rng)]).configure(get_recipe("luq"))
    m2.forward(rng.normal(0, 1, (16, 8)))
    m2.backward(dy)
    assert m2.stats()["0:Linear"]["gradient_saturations"] == 0
