"""Builds digits_layer.npz: the first layer of a small digit classifier, as INT operands.

Inputs: 96 scikit-learn 8x8 digit images (pixels 0..16 scaled to uint8 0..240); weights: a least-squares
linear classifier (64 -> 10) quantized per tensor to int8; bias on the accumulator grid.
Run from the repository root: python fxsim/data/make_demo_data.py
"""
import os

import numpy as np
from sklearn.datasets import load_digits


def main():
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    train, test = idx[:1500], idx[1500:1596]
    Xt = X[train] / 16.0
    Y = np.eye(10)[y[train]]
    Xb = np.hstack([Xt, np.ones((len(Xt), 1))])
    W = np.linalg.lstsq(Xb.T @ Xb + 1e-1 * np.eye(65), Xb.T @ Y, rcond=None)[0]
    scale = 127 / np.abs(W[:64]).max()
    Wq = np.clip(np.rint(W[:64] * scale), -128, 127).astype(np.int64)
    a = (X[test] * 15).astype(np.int64)                      # uint8 activations 0..240
    bias = np.rint(W[64] * scale * 240).astype(np.int64)     # on the accumulator grid (a*w units)
    here = os.path.dirname(os.path.abspath(__file__))
    np.savez(os.path.join(here, "digits_layer.npz"), a=a.astype(np.float64), b=Wq.astype(np.float64),
             bias=bias.astype(np.float64), labels=y[test])


if __name__ == "__main__":
    main()
