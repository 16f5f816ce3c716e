"""Row-sparse grads (step/rows.py, kernels/rows.py) against the dense result and a lazy oracle."""
import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.kernels import reference as ref
from adamax_engine import RowSparseGrad

R, D = 60, 5


def twins(rng, dtype, lazy=False, **kw):
    """An embedding + a dense weight, twice: row-sparse grads vs the same grads made dense."""
    emb, w = rng.standard_normal((R, D)).astype(dtype), rng.standard_normal(7).astype(dtype)
    sparse = [ae.Parameter(emb.copy(), name="emb"), ae.Parameter(w.copy(), name="w")]
    dense = [ae.Parameter(emb.copy(), name="emb"), ae.Parameter(w.copy(), name="w")]
    return (sparse, ae.Adamax(0.05, parameters=sparse, lazy_mode=lazy, **kw),
            dense, ae.Adamax(0.05, parameters=dense, **kw))


def feed(rng, sparse, dense, dtype, k=8, rows=None):
    rows = rng.integers(0, R, k) if rows is None else rows
    vals = rng.standard_normal((len(rows), D)).astype(dtype)
    full = np.zeros((R, D), dtype)
    np.add.at(full, rows, vals)
    g = rng.standard_normal(7).astype(dtype)
    sparse[0].grad, sparse[1].grad = RowSparseGrad(rows, vals), g
    dense[0].grad, dense[1].grad = full, g.copy()
    return rows


def assert_equal_state(a, b, exact=True):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sb:
        if exact:
            np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)
        else:
            np.testing.assert_allclose(sa[key], sb[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["adopt", "borrow"])
@pytest.mark.parametrize("extra", [{}, {"weight_decay": 0.01, "grad_clip": ae.ClipGradByValue(0.4)},
                                   {"weight_decay": ae.L1Decay(0.01),
                                    "grad_clip": ae.ClipGradByValue(1.0, 0.05)},
                                   {"flavor": "torch"}, {"flavor": "keras"}],
                         ids=["plain", "l2+clip", "l1+positive-clip", "torch", "keras"])
def test_exact_mode_equals_dense(rng, dtype, mode, extra):
    sparse, opt_s, dense, opt_d = twins(rng, dtype, mode=mode, **extra)
    for step in range(15):
        feed(rng, sparse, dense, dtype)
        opt_s.step()
        opt_d.step()
        if step == 6:
            opt_s.flush()  # mid-way: everything equal, then continue lagging
            np.testing.assert_array_equal(sparse[0].data, dense[0].data)
    opt_s.flush()
    np.testing.assert_array_equal(sparse[0].data, dense[0].data)
    np.testing.assert_array_equal(sparse[1].data, dense[1].data)
    assert_equal_state(opt_s, opt_d)


def test_untouched_rows_lag_until_flushed_and_history_is_bounded(rng):
    sparse, opt_s, dense, opt_d = twins(rng, np.float32)
    opt_s.stepper.rows.max_lag = 4  # auto-flush every 4 updates: still exact
    for step in range(3):  # every row gets momentum, then only rows 1 and 2 are touched
        rows = np.arange(R) if step == 0 else np.array([1, 2, 2])
        feed(rng, sparse, dense, np.float32, rows=rows)
        opt_s.step()
        opt_d.step()
    np.testing.assert_array_equal(sparse[0].data[1:3], dense[0].data[1:3])
    assert not np.array_equal(sparse[0].data[5:], dense[0].data[5:])  # lagging rows
    for _ in range(9):
        feed(rng, sparse, dense, np.float32)
        opt_s.step()
        opt_d.step()
        assert opt_s.stepper.lag_of(opt_s.registry.entries[0]) <= 4
    assert_equal_state(opt_s, opt_d)  # state_dict flushes
    np.testing.assert_array_equal(sparse[0].data, dense[0].data)


def test_dense_grad_after_sparse_and_clear_grad(rng):
    sparse, opt_s, dense, opt_d = twins(rng, np.float64)
    for step in range(8):
        if step == 3:  # a dense grad on the sparse parameter: flushed first, then dense
            g = rng.standard_normal((R, D))
            sparse[0].grad, dense[0].grad = g, g.copy()
            sparse[1].grad = dense[1].grad = rng.standard_normal(7)
        elif step == 5:  # clear_grad(): a sparse grad with no rows, a dense grad of zeros
            opt_s.clear_grad()
            opt_d.clear_grad()
        else:
            feed(rng, sparse, dense, np.float64)
        opt_s.step()
        opt_d.step()
    assert_equal_state(opt_s, opt_d)
    np.testing.assert_array_equal(sparse[0].data, dense[0].data)


@pytest.mark.parametrize("clip", [ae.ClipGradByGlobalNorm(1.0), ae.ClipGradByNorm(0.5)])
def test_norm_clips_and_skip_nonfinite(rng, clip):
    sparse, opt_s, dense, opt_d = twins(rng, np.float32, grad_clip=clip, skip_nonfinite=True)
    for step in range(10):
        feed(rng, sparse, dense, np.float32)
        if step == 4:
            sparse[0].grad.values[0, 0] = dense[0].grad[sparse[0].grad.rows[0], 0] = np.inf
        opt_s.step()
        opt_d.step()
    assert opt_s.skipped_steps == opt_d.skipped_steps == 1
    opt_s.flush()  # the squares are summed in another order: last-bit differences
    np.testing.assert_allclose(sparse[0].data, dense[0].data, rtol=1e-5, atol=1e-6)
    assert_equal_state(opt_s, opt_d, exact=False)


def test_lazy_mode_moves_only_touched_rows(rng):
    dtype = np.float32
    sparse, opt_s, _, _ = twins(rng, dtype, lazy=True)
    emb = sparse[0].data.copy()
    m, u = np.zeros_like(emb), np.zeros_like(emb)
    b1, b2, eps = ref.paddle_hyper(dtype, 0.9, 0.999, 1e-8)
    beta1_pow = dtype(0.9)
    for _ in range(6):
        rows = rng.integers(0, 20, 9)  # rows 20.. are never touched
        vals = rng.standard_normal((9, D)).astype(dtype)
        sparse[0].grad = RowSparseGrad(rows, vals)
        sparse[1].grad = rng.standard_normal(7).astype(dtype)
        opt_s.step()
        summed = np.zeros_like(emb)
        np.add.at(summed, rows, vals)
        lr_t = dtype(0.05) / (dtype(1) - beta1_pow)
        for r in np.unique(rows):
            ref.adamax_update(emb[r], summed[r], m[r], u[r], lr_t=lr_t, beta1=b1, beta2=b2,
                              epsilon=eps)
        beta1_pow = beta1_pow * dtype(0.9)
    np.testing.assert_array_equal(sparse[0].data, emb)
    state = opt_s.state_dict()
    np.testing.assert_array_equal(state["emb_moment_0"], m)
    np.testing.assert_array_equal(state["emb_inf_norm_0"], u)
    assert not state["emb_inf_norm_0"][20:].any()  # untouched rows: no decay at all


def test_bad_sparse_grads_change_nothing(rng):
    sparse, opt_s, dense, opt_d = twins(rng, np.float32)
    feed(rng, sparse, dense, np.float32)
    opt_s.step()
    before = [sparse[0].data.copy(), opt_s.state_dict()["emb_moment_0"].copy()]
    cases = [
        (RowSparseGrad([0, R], np.ones((2, D), np.float32)), ValueError,
         r"emb.grad.rows: expected indices in \[0, 60\)"),
        (RowSparseGrad([0, 1], np.ones((2, D), np.float64)), TypeError,
         "emb.grad.values: expected dtype float32"),
        (RowSparseGrad([0, 1], np.ones((3, D), np.float32)), ValueError,
         r"emb.grad.values: expected shape \(2, 5\)"),
        (RowSparseGrad([[0, 1]], np.ones((2, D), np.float32)), TypeError,
         "emb.grad.rows: expected a 1-D integer array"),
        (RowSparseGrad([0.5], np.ones((1, D), np.float32)), TypeError,
         "emb.grad.rows: expected a 1-D integer array"),
    ]
    for grad, error, message in cases:
        sparse[0].grad = grad
        with pytest.raises(error, match=message):
            opt_s.step()
        np.testing.assert_array_equal(sparse[0].data, before[0])
    np.testing.assert_array_equal(opt_s.state_dict()["emb_moment_0"], before[1])
    with pytest.raises(TypeError, match="lazy_mode: expected a bool"):
        ae.Adamax(0.1, parameters=[ae.Parameter(np.ones(3, np.float32))], lazy_mode="yes")


def test_checkpoint_of_a_lagging_run_is_the_dense_state(rng, tmp_path):
    sparse, opt_s, dense, opt_d = twins(rng, np.float32)
    for _ in range(5):
        feed(rng, sparse, dense, np.float32)
        opt_s.step()
        opt_d.step()
    opt_s.save(tmp_path / "s.npz")  # flushes first
    opt_d.save(tmp_path / "d.npz")
    from adamax_engine.io import checkpoint
    _, a = checkpoint.read(tmp_path / "s.npz")
    _, b = checkpoint.read(tmp_path / "d.npz")
    for key in b:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    lazy, opt_l, _, _ = twins(rng, np.float32, lazy=True)
    opt_l.save(tmp_path / "l.npz")
    back = ae.Adamax.load(tmp_path / "l.npz", [ae.Parameter(p.data.copy(), name=p.name)
                                               for p in lazy])
    assert back.settings.lazy_mode is True


def test_closed_loop_training_needs_catch_up(rng):
    """Grads that depend on the looked-up rows: exact once those rows are caught up first."""
    sparse, opt_s, dense, opt_d = twins(rng, np.float64, weight_decay=0.02)
    for _ in range(8):
        rows = rng.integers(0, R, 6)
        opt_s.catch_up(sparse[0], rows)  # what a forward pass would read
        np.testing.assert_array_equal(sparse[0].data[rows], dense[0].data[rows])
        vals = np.tanh(sparse[0].data[rows]) + 0.1  # a grad computed from those rows
        full = np.zeros((R, D))
        np.add.at(full, rows, vals)
        sparse[0].grad, dense[0].grad = RowSparseGrad(rows, vals), full
        sparse[1].grad = dense[1].grad = np.ones(7)
        opt_s.step()
        opt_d.step()
    opt_s.flush()
    np.testing.assert_array_equal(sparse[0].data, dense[0].data)
    with pytest.raises(ValueError, match=r"rows: expected indices in \[0, 60\)"):
        opt_s.catch_up(sparse[0], [60])
    with pytest.raises(ValueError, match="not a parameter of this optimizer"):
        opt_s.catch_up(dense[0], [1])


@pytest.mark.parametrize("mode", ["adopt", "borrow"])
def test_torch_sparse_embedding_equals_dense_embedding(mode):
    """nn.Embedding(sparse=True) grads go the row-sparse way; the result is the dense one."""
    torch = pytest.importorskip("torch")

    def model(sparse):
        torch.manual_seed(0)
        return torch.nn.ModuleDict({"emb": torch.nn.Embedding(50, 4, sparse=sparse),
                                    "out": torch.nn.Linear(4, 1)})
    from adamax_engine.adapters.torch import keep_rows_current
    ms, md = model(True), model(False)
    opt_s = ae.Adamax(0.05, parameters=ms.named_parameters(), mode=mode, weight_decay=0.01)
    opt_d = ae.Adamax(0.05, parameters=md.named_parameters(), mode=mode, weight_decay=0.01)
    keep_rows_current(ms["emb"], opt_s)  # the looked-up rows are caught up before forward
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):
        idx = torch.randint(0, 20, (16,), generator=gen)  # rows 20.. never looked up
        for m, opt in ((ms, opt_s), (md, opt_d)):
            opt.clear_grad(set_to_zero=False)
            m["out"](m["emb"](idx)).pow(2).mean().backward()
            opt.step()
    assert ms["emb"].weight.grad.is_sparse
    opt_s.flush()
    for (name, p), q in zip(ms.named_parameters(), md.parameters()):
        assert torch.equal(p.detach(), q.detach()), name
