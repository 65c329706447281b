"""Train a small CNN on scikit-learn's 8x8 digits in float64 and in low precision, every GEMM of the
forward and backward passes running through fxsim's bit-exact datapaths."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from fxsim.training.layers import SGD, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, softmax_cross_entropy
from fxsim.training.recipes import get_recipe

DEMO_RECIPES = ("float64", "int8", "luq", "hfp8", "sun2020", "int8_inference")


def build_model(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential([Conv2d(1, 8, 3, padding=1, rng=rng), ReLU(), MaxPool2d(2), Flatten(), Linear(128, 10, rng=rng)])


def load_data():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8)
    perm = np.random.default_rng(0).permutation(len(X))
    tr, te = perm[:1500], perm[1500:]
    return X[tr], y[tr], X[te], y[te]


def train(recipe, *, epochs=4, batch=50, lr=0.05, momentum=0.9, n_train=None, seed=0, data=None):
    """Returns (test accuracy, loss per step, per-layer statistics, seconds)."""
    Xtr, ytr, Xte, yte = data if data is not None else load_data()
    if n_train:
        Xtr, ytr = Xtr[:n_train], ytr[:n_train]
    model = build_model(seed).configure(get_recipe(recipe), seed=seed)
    opt = SGD(model, lr=lr, momentum=momentum)
    losses = []
    t0 = time.time()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(Xtr))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            loss, g = softmax_cross_entropy(model.forward(Xtr[idx]), ytr[idx])
            model.backward(g)
            opt.step()
            losses.append(loss)
    acc = float(np.mean(np.argmax(model.forward(Xte), axis=1) == yte))
    return acc, losses, model.stats(), time.time() - t0


def run_training_demo(out_dir, *, quick=False, recipes=DEMO_RECIPES) -> dict:
    """Train every recipe, write training.json and loss.png to ``out_dir``; return the summary."""
    os.makedirs(out_dir, exist_ok=True)
    data = load_data()
    kw = dict(epochs=2, n_train=600, lr=0.1) if quick else dict(epochs=5)
    summary = {"dataset": "scikit-learn digits 8x8 (1500 train / 297 test)", "model":
               "Conv2d(1->8, 3x3, pad 1) - ReLU - MaxPool 2 - Linear(128->10)", "recipes": {}}
    curves = {}
    for name in recipes:
        acc, losses, stats, secs = train(name, data=data, **kw)
        curves[name] = losses
        summary["recipes"][name] = {"test_accuracy": acc, "final_loss": losses[-1], "seconds": round(secs, 1),
                                    "paper": get_recipe(name).paper, "layer_stats": stats}
        print(f"      {name:<15} test accuracy {acc:.3f}  final loss {losses[-1]:.3f}  ({secs:.1f} s)")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, losses in curves.items():
        ax.plot(losses, label=f"{name} ({summary['recipes'][name]['test_accuracy']:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("digits CNN: training loss per recipe (test accuracy)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "loss.png"), dpi=110)
    plt.close(fig)
    summary["loss_plot"] = os.path.join(out_dir, "loss.png")
    with open(os.path.join(out_dir, "training.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary
