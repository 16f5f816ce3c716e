"""Row-sparse grads (embedding tables) with low-bit state: int8 blocks span rows, so a step
cannot touch only some rows' codes; the registry steps the dense grad a RowSparseGrad stands
for (zeros elsewhere, duplicates summed in the order given), which is lazy_mode=False's result.
Checked bit for bit against the same optimizer fed that dense grad, and against the oracle."""
import numpy as np
import pytest

import adamax_engine as ae

SHAPES = ((300, 7), (5, 3), (33,))  # an embedding crossing 256-element blocks, a small table,
ROW_SPARSE = (0, 1)                  # and a dense parameter


def build(state_dtype, mode="adopt", backend=None, **kw):
    rng = np.random.default_rng(3)
    params = [ae.Parameter(rng.standard_normal(s).astype(np.float32), name=f"p{i}")
              for i, s in enumerate(SHAPES)]
    return params, ae.Adamax(0.01, parameters=params, state_dtype=state_dtype, mode=mode,
                             backend=backend, **kw)


def sparse_grads(step):
    """Per parameter: (RowSparseGrad or None, the dense grad it stands for)."""
    rng = np.random.default_rng(50 + step)
    out = []
    for i, shape in enumerate(SHAPES):
        if i not in ROW_SPARSE:
            g = rng.standard_normal(shape).astype(np.float32)
            out.append((None, g))
            continue
        rows = rng.integers(0, shape[0], 9)
        rows[1] = rows[0]  # a duplicate: summed
        values = rng.standard_normal((9,) + shape[1:]).astype(np.float32)
        dense = np.zeros(shape, np.float32)
        np.add.at(dense, rows, values)
        out.append((ae.RowSparseGrad(rows, values), dense))
    return out


def held(params, opt):
    b = opt.registry.buckets[0]
    return [p.data.copy() for p in params] + [np.asarray(x).copy() for x in
                                               (b.moment, b.inf_norm, *(b.scales or ()))]


@pytest.mark.parametrize("mode", ["adopt", "borrow"])
@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_row_sparse_grads_step_as_the_dense_grad_they_stand_for(state_dtype, mode):
    clip = {"grad_clip": ae.ClipGradByGlobalNorm(0.5)}
    (ps, sparse_opt), (pd, dense_opt) = build(state_dtype, mode, **clip), \
        build(state_dtype, mode, **clip)
    (pr, oracle) = build(state_dtype, mode, backend="reference", **clip)
    for step in range(3):
        grads = sparse_grads(step)
        for p, q, r, (sparse, dense) in zip(ps, pd, pr, grads):
            p.grad = sparse if sparse is not None else dense.copy()
            r.grad = sparse if sparse is not None else dense.copy()
            q.grad = dense.copy()
        sparse_opt.step()
        dense_opt.step()
        oracle.step()
        assert ps[0].grad is grads[0][0]  # the caller's grad stays the row-sparse one
        if step == 0:
            after_first = ps[0].data.copy()
    for x, y, z in zip(held(ps, sparse_opt), held(pd, dense_opt), held(pr, oracle)):
        np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))
        np.testing.assert_array_equal(x.view(np.uint8), z.view(np.uint8))
    rows = [sparse_grads(s)[0][0].rows for s in range(3)]
    resting = np.setdiff1d(rows[0], np.concatenate(rows[1:]))  # a grad at step 0 only
    moved = (ps[0].data[resting] != after_first[resting]).any(axis=1)
    assert len(resting) and moved.all()  # still moving
    # (lazy_mode=False's dense result: their moments carry on; a lazy step would leave them)


def test_a_cleared_row_sparse_grad_is_a_zero_grad():
    (ps, opt), (pd, ref) = build("int8"), build("int8")
    for p, q, (sparse, dense) in zip(ps, pd, sparse_grads(0)):
        p.grad, q.grad = (sparse if sparse is not None else dense.copy()), dense.copy()
    opt.step()
    ref.step()
    opt.clear_grad()  # set_to_zero: the row-sparse grads keep no rows
    ref.clear_grad()
    opt.step()
    ref.step()
    for x, y in zip(held(ps, opt), held(pd, ref)):
        np.testing.assert_array_equal(x, y)


def test_bad_row_sparse_grads_and_lazy_mode_are_refused():
    ps, opt = build("int8")
    before = held(ps, opt)
    ps[0].grad = ae.RowSparseGrad(np.array([0, 300]), np.ones((2, 7), np.float32))
    with pytest.raises(ValueError, match=r"p0.grad.rows: expected indices in \[0, 300\)"):
        opt.step()
    for x, y in zip(before, held(ps, opt)):  # nothing written
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="lazy_mode=True with state_dtype='bfloat16'.*pass "
                                         "lazy_mode=False"):
        build("bfloat16", lazy_mode=True)


@pytest.mark.parametrize("front,mode", [("core", "adopt"), ("core", "borrow"), ("torch", None)])
def test_torch_sparse_embedding_equals_dense_embedding(front, mode):
    """nn.Embedding(sparse=True) with int8 state, through the engine core on torch parameters
    or the torch front: the same bits as nn.Embedding(sparse=False); grads stay sparse."""
    torch = pytest.importorskip("torch")
    from adamax_engine.torch import Adamax as TorchAdamax

    def model(sparse):
        torch.manual_seed(0)
        m = torch.nn.ModuleDict({"emb": torch.nn.Embedding(300, 4, sparse=sparse),
                                 "out": torch.nn.Linear(4, 1)})
        if front == "torch":
            return m, TorchAdamax(m.parameters(), lr=0.05, state_dtype="int8")
        return m, ae.Adamax(0.05, parameters=m.named_parameters(), mode=mode,
                            state_dtype="int8")
    (ms, opt_s), (md, opt_d) = model(True), model(False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        idx = torch.randint(0, 300, (16,), generator=gen)
        for m, opt in ((ms, opt_s), (md, opt_d)):
            opt.zero_grad(set_to_none=True) if front == "torch" else \
                opt.clear_grad(set_to_zero=False)
            m["out"](m["emb"](idx)).pow(2).mean().backward()
            opt.step()
    assert ms["emb"].weight.grad.is_sparse
    for (name, p), q in zip(ms.named_parameters(), md.parameters()):
        assert torch.equal(p.detach(), q.detach()), name
