"""Built-in problems: numpy models with hand-written backward on deterministic synthetic data.

Each ``make_<name>(seed, **options)`` returns a Problem: named ``adamax_engine.Parameter``s and
``loss_and_grads()``, which stores the gradient in each ``p.grad`` (in place once the optimizer
has adopted it) and returns the loss. Everything is full-batch and seeded, so a run is a pure
function of its config: what makes ``--resume`` bit-identical to an uninterrupted run.
"""
import math

import numpy as np

from ..params.parameter import Parameter

# name -> {option: (default, kind, lowest allowed)}
OPTIONS = {
    "softmax_blobs": {"samples": (2048, int, 2), "features": (16, int, 1), "classes": (4, int, 2)},
    "mlp_spirals": {"samples": (512, int, 4), "hidden": (32, int, 1), "turns": (1.5, float, 0.1)},
    "teacher_student": {"samples": (1024, int, 2), "features": (8, int, 1), "hidden": (16, int, 1),
                        "noise": (0.01, float, 0.0)},
    "quadratic": {"dim": (100, int, 1), "condition": (1000.0, float, 1.0)},
    "rosenbrock": {"dim": (2, int, 2)},
    "digits": {"hidden": (0, int, 0)},
}


class Problem:
    """``data`` holds the inputs and targets (the torch backend builds its model on them)."""
    mode = "adopt"

    def __init__(self, params, loss_and_grads, accuracy=None, data=None):
        self.params, self._loss_and_grads, self.accuracy = params, loss_and_grads, accuracy
        self.data = data or {}

    def loss_and_grads(self):
        loss, grads = self._loss_and_grads(*[p.data for p in self.params])
        for p, g in zip(self.params, grads):
            if p.grad is None:
                p.grad = np.ascontiguousarray(g, dtype=p.data.dtype)
            else:
                p.grad[...] = g
        return float(loss)


def _softmax_xent(logits, labels):
    """Mean cross-entropy and d loss / d logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(prob[np.arange(n), labels] + 1e-12).mean()
    prob[np.arange(n), labels] -= 1
    return loss, prob / n


def _mlp_classifier(x, labels, hidden, classes, rng, prefix=""):
    """A softmax classifier, linear (hidden == 0) or with one tanh hidden layer."""
    f = x.shape[1]
    if hidden == 0:
        params = [Parameter((0.01 * rng.standard_normal((f, classes))).astype(np.float32),
                            name=f"{prefix}linear.weight"),
                  Parameter(np.zeros(classes, np.float32), name=f"{prefix}linear.bias")]

        def loss_and_grads(w, b):
            loss, d = _softmax_xent(x @ w + b, labels)
            return loss, [x.T @ d, d.sum(axis=0)]

        def accuracy():
            w, b = (p.data for p in params)
            return float(((x @ w + b).argmax(axis=1) == labels).mean())
        return Problem(params, loss_and_grads, accuracy, {"x": x, "labels": labels})
    params = [Parameter((rng.standard_normal((f, hidden)) / math.sqrt(f)).astype(np.float32),
                        name=f"{prefix}fc1.weight"),
              Parameter(np.zeros(hidden, np.float32), name=f"{prefix}fc1.bias"),
              Parameter((rng.standard_normal((hidden, classes)) / math.sqrt(hidden))
                        .astype(np.float32), name=f"{prefix}fc2.weight"),
              Parameter(np.zeros(classes, np.float32), name=f"{prefix}fc2.bias")]

    def forward(w1, b1, w2, b2):
        h = np.tanh(x @ w1 + b1)
        return h, h @ w2 + b2

    def loss_and_grads(w1, b1, w2, b2):
        h, logits = forward(w1, b1, w2, b2)
        loss, d = _softmax_xent(logits, labels)
        dh = (d @ w2.T) * (1 - h * h)
        return loss, [x.T @ dh, dh.sum(axis=0), h.T @ d, d.sum(axis=0)]

    def accuracy():
        return float((forward(*(p.data for p in params))[1].argmax(axis=1) == labels).mean())
    return Problem(params, loss_and_grads, accuracy, {"x": x, "labels": labels})


def make_softmax_blobs(seed, samples, features, classes):
    rng = np.random.default_rng(seed)
    means = 0.6 * rng.standard_normal((classes, features))
    labels = rng.integers(0, classes, samples)
    x = (means[labels] + rng.standard_normal((samples, features))).astype(np.float32)
    return _mlp_classifier(x, labels, 0, classes, np.random.default_rng(seed + 1))


def make_mlp_spirals(seed, samples, hidden, turns):
    rng = np.random.default_rng(seed)
    half = samples // 2
    t = np.sqrt(rng.uniform(0, 1, half)) * turns * 2 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (turns * 2 * np.pi)
    x = np.concatenate([arm, -arm]) + 0.02 * rng.standard_normal((2 * half, 2))
    labels = np.repeat([0, 1], half)
    return _mlp_classifier(x.astype(np.float32), labels, hidden, 2, rng)


def make_teacher_student(seed, samples, features, hidden, noise):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, features)).astype(np.float32)
    t1 = rng.standard_normal((features, hidden)) / math.sqrt(features)
    t2 = rng.standard_normal((hidden, 1)) / math.sqrt(hidden)
    y = (np.tanh(x @ t1) @ t2 + noise * rng.standard_normal((samples, 1))).astype(np.float32)
    params = [Parameter((rng.standard_normal((features, hidden)) / math.sqrt(features))
                        .astype(np.float32), name="student.fc1.weight"),
              Parameter((rng.standard_normal((hidden, 1)) / math.sqrt(hidden)).astype(np.float32),
                        name="student.fc2.weight")]

    def loss_and_grads(w1, w2):
        h = np.tanh(x @ w1)
        r = h @ w2 - y
        d = 2 * r / len(y)
        return float((r * r).mean()), [x.T @ ((d @ w2.T) * (1 - h * h)), h.T @ d]
    return Problem(params, loss_and_grads, data={"x": x, "y": y})


def make_quadratic(seed, dim, condition):
    """0.5 * sum(lam_i * x_i^2), eigenvalues log-spaced in [1, condition], rotated."""
    rng = np.random.default_rng(seed)
    lam = np.logspace(0, math.log10(condition), dim)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    a = ((q * lam) @ q.T).astype(np.float64)
    params = [Parameter(rng.standard_normal(dim).astype(np.float64), name="x")]

    def loss_and_grads(x):
        ax = a @ x
        return 0.5 * float(x @ ax), [ax]
    return Problem(params, loss_and_grads)


def make_rosenbrock(seed, dim):
    """sum(100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2) from the classic start (-1.2, 1, ...)."""
    del seed  # deterministic start
    x0 = np.ones(dim, np.float64)
    x0[::2] = -1.2
    params = [Parameter(x0, name="x")]

    def loss_and_grads(x):
        a, b = x[:-1], x[1:]
        loss = float((100 * (b - a * a) ** 2 + (1 - a) ** 2).sum())
        g = np.zeros_like(x)
        g[:-1] = -400 * a * (b - a * a) - 2 * (1 - a)
        g[1:] += 200 * (b - a * a)
        return loss, [g]
    return Problem(params, loss_and_grads)


def make_digits(seed, hidden):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise RuntimeError("problem 'digits' needs scikit-learn (pip install scikit-learn)") \
            from None
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return _mlp_classifier(x, data.target, hidden, 10, np.random.default_rng(seed))


MAKERS = {name: globals()[f"make_{name}"] for name in OPTIONS}


def estimate_bytes(name, options):
    """Roughly the memory a problem's data, parameters and activations take (float64 temporaries
    counted at 8 B): enough to refuse a size that cannot fit before anything is allocated."""
    kw = {k: options.get(k, default) for k, (default, _, _) in OPTIONS[name].items()}
    if name == "softmax_blobs":
        return 8 * kw["samples"] * (kw["features"] + 3 * kw["classes"])
    if name == "mlp_spirals":
        return 8 * kw["samples"] * (6 + 4 * kw["hidden"]) + 8 * kw["hidden"] ** 2
    if name == "teacher_student":
        return 8 * kw["samples"] * (kw["features"] + 4 * kw["hidden"]) \
            + 16 * kw["features"] * kw["hidden"]
    if name == "quadratic":
        return 8 * 4 * kw["dim"] ** 2  # the matrix, its eigenvectors and two temporaries
    if name == "rosenbrock":
        return 8 * 8 * kw["dim"]
    return 8 * 1797 * (64 + 4 * max(kw["hidden"], 10))  # digits: sklearn's 1797 images


def make(name, seed, options):
    """The named problem with its options filled in from the defaults."""
    kw = {k: options.get(k, default) for k, (default, _, _) in OPTIONS[name].items()}
    return MAKERS[name](seed, **kw)
