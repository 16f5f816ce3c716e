"""The built-in demo problem: softmax regression on Gaussian blobs, numpy forward/backward."""
import numpy as np


def make_blobs(samples, features, classes, seed):
    """Deterministic, linearly separable-ish blobs: class means on a scaled random simplex."""
    rng = np.random.default_rng(seed)
    means = 0.6 * rng.standard_normal((classes, features))
    labels = rng.integers(0, classes, samples)
    x = means[labels] + rng.standard_normal((samples, features))
    return x.astype(np.float32), labels


def init_params(features, classes, seed):
    """Small random weights and zero bias, float32."""
    rng = np.random.default_rng(seed + 1)
    return ((0.01 * rng.standard_normal((features, classes))).astype(np.float32),
            np.zeros(classes, dtype=np.float32))


def softmax_loss_and_grads(w, b, x, labels):
    """Mean cross-entropy and its gradients w.r.t. w (features x classes) and b (classes)."""
    logits = x @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(prob[np.arange(n), labels] + 1e-12).mean()
    dlogits = prob
    dlogits[np.arange(n), labels] -= 1
    dlogits /= n
    return float(loss), (x.T @ dlogits).astype(w.dtype), dlogits.sum(axis=0).astype(b.dtype)
