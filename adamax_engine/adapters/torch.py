"""The torch adapter: ``torch.nn.Parameter``s on the CPU, adopted by default.

Adopt: ``param.data`` and ``param.grad`` become tensors over the registry's flat buffers
(``torch.from_numpy`` of its views), so a step is one kernel call. Autograd accumulates into
that grad in place; after ``zero_grad(set_to_none=True)`` the next backward makes a new grad
tensor, which the next step notices by address, copies in and re-points: never a lost gradient.
Borrow (``mode="borrow"``): the kernel steps torch's own memory through an address table.
Names: ``model.named_parameters()`` (pairs) gives the parameters their names, else param_<i>.
"""
from .tensor import TensorAdapter, numpy_dtype


class TorchAdapter(TensorAdapter):
    framework = "torch"
    trainable_attr = "requires_grad"
    default_mode = "adopt"

    @classmethod
    def accepts(cls, param):
        return super().accepts(param) and not param.is_cuda  # (TorchCudaAdapter's)

    @staticmethod
    def tensor_type():
        import torch
        return torch.Tensor

    @staticmethod
    def attributes(param):
        """torch has no per-parameter lr, regularizer or need_clip: paddle's defaults."""
        return None, 1.0, None, True

    @staticmethod
    def trainable(param):
        return bool(param.requires_grad)

    @staticmethod
    def data(param):
        return param  # (param.data would build a new tensor object on every call)

    @staticmethod
    def row_sparse(grad):
        """A sparse COO grad (nn.Embedding(sparse=True)) as a RowSparseGrad, else None."""
        if grad is None or not grad.is_sparse:
            return None
        from ..params.rowsparse import RowSparseGrad
        g = grad.coalesce()
        return RowSparseGrad(g.indices()[0].numpy(), g.values().detach().numpy())

    @staticmethod
    def numpy(value):
        import torch
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16: view the bits as ml_dtypes'
            return value.detach().view(torch.int16).numpy().view(numpy_dtype("bfloat16"))
        return value.detach().numpy()

    @staticmethod
    def describe(value):
        return (tuple(value.shape), numpy_dtype(value.dtype), value.is_contiguous(),
                value.device.type == "cpu")

    @staticmethod
    def point(param, data=None, grad=None):
        import torch
        if data is not None:
            param.data = _tensor(torch, data)
        if grad is not None:
            param.grad = _tensor(torch, grad)

    @staticmethod
    def clear_grad(param):
        param.grad = None


class TorchCudaAdapter(TorchAdapter):
    """torch CUDA parameters (``model.cuda()``) with ``device="cuda"``. Adopted by default, as
    on the CPU, through ``__cuda_array_interface__``: ``param.data`` / ``.grad`` become torch
    views (``torch.as_tensor``, no copy) of the registry's flat device buffers, so backward
    accumulates into them and a step is one launch per bucket; a new grad tensor is copied in
    on the device and re-pointed. ``mode="borrow"``: torch's own memory is stepped through
    address tables (kernels/cuda/borrow.py). float32/float64 (float16 with multi_precision in
    adopt mode; numba has no bfloat16 on the GPU). numba's simulator has no CUDA Array
    Interface: tests/test_cuda_frameworks.py runs this on a GPU only.
    """
    device = "cuda"

    @classmethod
    def accepts(cls, param):
        return super(TorchAdapter, cls).accepts(param) and param.is_cuda

    @staticmethod
    def data(param):
        return param.detach()  # (a tensor that requires grad refuses to export its memory)

    @staticmethod
    def describe(value):
        return (tuple(value.shape), numpy_dtype(value.dtype), value.is_contiguous(),
                value.is_cuda)

    @staticmethod
    def row_sparse(grad):
        if grad is not None and grad.is_sparse:
            raise TypeError("grad: row-sparse CUDA grads are not supported yet (use a dense "
                            "grad, or keep the embedding on the CPU)")
        return None

    @staticmethod
    def copy_into(view, value):
        from numba import cuda
        view.copy_to_device(cuda.as_cuda_array(value.detach()))

    @staticmethod
    def point(param, data=None, grad=None):
        import torch
        if data is not None:
            param.data = torch.as_tensor(data, device="cuda")
        if grad is not None:
            param.grad = torch.as_tensor(grad, device="cuda")


def keep_rows_current(embedding, optimizer):
    """Exact row-sparse training of ``nn.Embedding(sparse=True)``: before each forward pass,
    bring the rows it looks up up to date (``Adamax.catch_up``). Returns the hook handle."""
    def hook(module, inputs):
        optimizer.catch_up(module.weight, inputs[0].detach().cpu().numpy())
    return embedding.register_forward_pre_hook(hook)


def _tensor(torch, view):
    """torch.from_numpy, also for ml_dtypes' bfloat16 (through the int16 bits, no copy)."""
    if view.dtype.kind == "V":  # ml_dtypes' bfloat16 (dtype.name is slow to build)
        return torch.from_numpy(view.view("int16")).view(torch.bfloat16)
    return torch.from_numpy(view)
