"""``model.framework: torch``: the same problems as torch modules, autograd for the backward.

The optimizer still is adamax_engine's: each torch parameter is wrapped, without a copy, as an
``adamax_engine.Parameter`` over ``tensor.detach().numpy()`` and stepped in borrow mode, so the
engine updates torch's own memory in place and torch's grads are read where autograd left them
(grads are zeroed in place, never set to None, so those views stay valid). Same data and
initial weights as the numpy problems, so the two backends' curves agree to rounding.
"""
import numpy as np

from ..params.parameter import Parameter
from . import problems

TORCH_PROBLEMS = ("softmax_blobs", "mlp_spirals", "teacher_student", "digits")


class TorchProblem:
    """The Problem interface (params, loss_and_grads, accuracy) over a torch module."""

    def __init__(self, torch, module, loss_fn, x, y, accuracy):
        self.torch, self.module, self.loss_fn, self.x, self.y = torch, module, loss_fn, x, y
        self._accuracy = accuracy
        self.tensors = [t for _, t in module.named_parameters()]
        for t in self.tensors:
            t.grad = torch.zeros_like(t)  # allocated once; zeroed in place every step
        self.params = [Parameter(t.detach().numpy(), name=n)
                       for n, t in module.named_parameters()]
        for p, t in zip(self.params, self.tensors):
            p.grad = t.grad.numpy()
        self.mode = "borrow"

    def loss_and_grads(self):
        for t in self.tensors:
            t.grad.zero_()
        loss = self.loss_fn(self.module(self.x), self.y)
        loss.backward()
        return float(loss.detach())

    def accuracy(self):
        if self._accuracy is None:
            return None
        with self.torch.no_grad():
            return self._accuracy(self.module(self.x), self.y)


def make(name, seed, options):
    """The torch version of a built-in problem, initialised from the numpy one's weights."""
    try:
        import torch
    except ImportError:
        raise RuntimeError("model.framework: torch needs PyTorch (pip install torch)") from None
    if name not in TORCH_PROBLEMS:
        raise RuntimeError(f"model.framework: torch has no model for problem {name!r} "
                           f"(it has: {', '.join(TORCH_PROBLEMS)})")
    ref = problems.make(name, seed, options)  # same data and initial weights
    data = ref.data
    init = {p.name: p.data for p in ref.params}
    x = torch.from_numpy(np.ascontiguousarray(data["x"]))
    if name == "teacher_student":
        w1, w2 = init["student.fc1.weight"], init["student.fc2.weight"]
        module = torch.nn.Sequential()
        module.add_module("fc1", torch.nn.Linear(w1.shape[0], w1.shape[1], bias=False))
        module.add_module("tanh", torch.nn.Tanh())
        module.add_module("fc2", torch.nn.Linear(w2.shape[0], 1, bias=False))
        with torch.no_grad():
            module.fc1.weight.copy_(torch.from_numpy(w1.T.copy()))
            module.fc2.weight.copy_(torch.from_numpy(w2.T.copy()))
        y = torch.from_numpy(np.ascontiguousarray(data["y"]))
        return TorchProblem(torch, module, torch.nn.functional.mse_loss, x, y, None)
    y = torch.from_numpy(np.asarray(data["labels"], np.int64))
    layers = [k.split(".")[-2] for k in init if k.endswith(".weight")]
    module = torch.nn.Sequential()
    for i, layer in enumerate(layers):
        w, b = init[f"{layer}.weight"], init[f"{layer}.bias"]
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        module.add_module(layer, lin)
        if i < len(layers) - 1:
            module.add_module(f"tanh{i}", torch.nn.Tanh())
    return TorchProblem(torch, module, torch.nn.functional.cross_entropy, x, y,
                        lambda logits, labels: float((logits.argmax(1) == labels)
                                                     .float().mean()))
