"""Multinomial logistic regression in numpy: the flow's examples -> a classifier over sentence vectors.

Why our own ~60 lines and not scikit-learn: the problem is small (a few thousand
examples, ~900 features, ~40 classes), numpy is already here, and scikit-learn
would add scipy (~100 MB installed) for one fit. Full-batch Adam on the
cross-entropy with an L2 penalty; classes weighted so that an intent with many
examples (urgence) does not win every doubtful sentence. Deterministic: same
examples, same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LogReg:
    weights: np.ndarray  # (features, classes)
    bias: np.ndarray  # (classes,)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias

    def proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit(x: np.ndarray, y: np.ndarray, n_classes: int, *, weight: np.ndarray | None = None, l2: float = 1e-3,
        epochs: int = 400, lr: float = 0.05, balanced: bool = True) -> LogReg:
    """Fit on rows ``x`` with integer labels ``y`` (and optional per-row ``weight``); ``l2`` penalises ``w``."""
    n, d = x.shape
    x = x.astype(np.float32)
    onehot = np.zeros((n, n_classes), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0
    counts = np.bincount(y, minlength=n_classes).astype(np.float32)
    sample_w = (n / (n_classes * np.maximum(counts, 1.0)))[y] if balanced else np.ones(n, np.float32)
    if weight is not None:
        sample_w = sample_w * weight
    sample_w = (sample_w / sample_w.sum()).astype(np.float32)[:, None]
    w = np.zeros((d, n_classes), dtype=np.float32)
    b = np.zeros(n_classes, dtype=np.float32)
    mw, vw = np.zeros_like(w), np.zeros_like(w)
    mb, vb = np.zeros_like(b), np.zeros_like(b)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, epochs + 1):
        p = softmax(x @ w + b)
        g = (p - onehot) * sample_w
        gw = x.T @ g + l2 * w
        gb = g.sum(axis=0)
        mw = beta1 * mw + (1 - beta1) * gw
        vw = beta2 * vw + (1 - beta2) * gw * gw
        mb = beta1 * mb + (1 - beta1) * gb
        vb = beta2 * vb + (1 - beta2) * gb * gb
        c1, c2 = 1 - beta1 ** t, 1 - beta2 ** t
        w -= lr * (mw / c1) / (np.sqrt(vw / c2) + eps)
        b -= lr * (mb / c1) / (np.sqrt(vb / c2) + eps)
    return LogReg(w, b)
