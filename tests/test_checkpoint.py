"""Checkpoints: bit-identical resume, across frameworks, atomic under kill -9, tamper-proof."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.io import checkpoint
from adamax_engine.io.checkpoint import CheckpointError
from adamax_engine.lr import LambdaDecay, LinearWarmup, StepDecay

SHAPES = [(7, 5), (33,), (2, 3, 4), (1,)]


def make_params(seed=0, dtype=np.float32, names="w"):
    rng = np.random.default_rng(seed)
    return [ae.Parameter(rng.standard_normal(s).astype(dtype), name=f"{names}{i}")
            for i, s in enumerate(SHAPES)]


def grads_for(step, shapes=SHAPES, dtype=np.float32):
    rng = np.random.default_rng(1000 + step)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def run(opt, params, steps, start=0, sched=None):
    for t in range(start, start + steps):
        for p, g in zip(params, grads_for(t)):
            p.grad = g
        opt.step()
        if sched is not None:
            sched.step()


def full_optimizer(params, lr=None):
    lr = lr if lr is not None else LinearWarmup(StepDecay(0.05, step_size=3, gamma=0.5), 4,
                                                0.0, 0.05)
    groups = [{"params": params[:2], "beta1": 0.8, "learning_rate": 0.5,
               "grad_clip": ae.ClipGradByGlobalNorm(1.0)},
              {"params": params[2:], "weight_decay": ae.L1Decay(0.01)}]
    return ae.Adamax(learning_rate=lr, parameters=groups, weight_decay=0.02,
                     grad_clip=ae.ClipGradByNorm(0.7), skip_nonfinite=True), lr


def snapshot(opt, params):
    sd = opt.state_dict()
    return ([p.data.copy() for p in params],
            {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else dict(v))
             for k, v in sd.items()}, opt.skipped_steps)


def assert_same(a, b):
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        if isinstance(a[1][k], np.ndarray):
            np.testing.assert_array_equal(a[1][k], b[1][k], err_msg=k)
        else:
            assert a[1][k] == b[1][k], k
    assert a[2] == b[2]


def test_round_trip_resumes_bit_identically(tmp_path):
    params = make_params()
    opt, sched = full_optimizer(params)
    run(opt, params, 5, sched=sched)
    params[3].grad = np.array([np.inf], np.float32)  # a skipped step is counted and saved
    opt.step()
    assert opt.skipped_steps == 1
    path = tmp_path / "ck.npz"
    opt.save(path)
    run(opt, params, 6, start=5, sched=sched)
    expected = snapshot(opt, params)

    fresh = make_params(seed=99)  # other values: everything must come from the file
    opt2 = ae.Adamax.load(path, fresh)
    sched2 = opt2._learning_rate
    assert type(sched2) is LinearWarmup and sched2.last_epoch == sched.last_epoch - 6
    assert opt2.skipped_steps == 1 and opt2.flavor == "paddle"
    run(opt2, fresh, 6, start=5, sched=sched2)
    assert_same(snapshot(opt2, fresh), expected)


def test_restore_into_existing_optimizer_and_plain_numpy_reading(tmp_path):
    params = make_params()
    opt, sched = full_optimizer(params)
    run(opt, params, 4, sched=sched)
    path = tmp_path / "ck.npz"
    opt.save(path, extra={"epoch": 3}, extra_arrays={"loss": np.arange(4.0)})
    before = snapshot(opt, params)
    run(opt, params, 3, start=4, sched=sched)
    extra = opt.restore(path)
    assert extra["epoch"] == 3 and list(extra["arrays"]["loss"]) == [0, 1, 2, 3]
    assert_same(snapshot(opt, params), before)
    # the format is documented plain numpy + JSON
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        np.testing.assert_array_equal(z["param/w0"], params[0].data)
        np.testing.assert_array_equal(z["moment/w1"], opt.state_dict()["w1_moment_0"])
        assert z["beta1_pow/w0"].dtype == np.float32 and z["steps/w2"][0] == 4
    assert [p["name"] for p in meta["parameters"]] == ["w0", "w1", "w2", "w3"]
    assert meta["config"]["groups"][0]["beta1"] == 0.8


def test_flavor_and_float64_round_trip(tmp_path):
    params = make_params(dtype=np.float64)
    opt = ae.Adamax(learning_rate=0.01, parameters=params, flavor="torch")
    for t in range(3):
        for p, g in zip(params, grads_for(t, dtype=np.float64)):
            p.grad = g
        opt.step()
    opt.save(tmp_path / "ck.npz")
    other = make_params(seed=5, dtype=np.float64)
    opt2 = ae.Adamax.load(tmp_path / "ck.npz", other)
    for p, q in zip(params, other):
        np.testing.assert_array_equal(p.data, q.data)
    for o, ps in ((opt, params), (opt2, other)):
        for p, g in zip(ps, grads_for(7, dtype=np.float64)):
            p.grad = g
        o.step()
    for p, q in zip(params, other):
        np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(CheckpointError, match="flavor 'torch'"):
        ae.Adamax(learning_rate=0.01, parameters=make_params(dtype=np.float64)).restore(
            tmp_path / "ck.npz")


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[:len(data) // 2]
    else:
        data[len(data) // 3] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_file_is_refused_and_nothing_changes(tmp_path, how):
    params = make_params()
    opt, sched = full_optimizer(params)
    run(opt, params, 3, sched=sched)
    path = tmp_path / "ck.npz"
    opt.save(path)
    run(opt, params, 2, start=3, sched=sched)
    before = snapshot(opt, params)
    epoch = sched.last_epoch
    _damage(path, how)
    with pytest.raises(CheckpointError, match="ck.npz"):
        opt.restore(path)
    with pytest.raises(CheckpointError):
        ae.Adamax.load(path, make_params())
    assert_same(snapshot(opt, params), before)
    assert sched.last_epoch == epoch


def _rewrite(path, change):
    """Re-pack a checkpoint with ``change(meta, arrays)`` applied, zip CRCs valid again."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["__meta__"]))
    change(meta, arrays)
    text = json.dumps(meta)
    arrays["__meta__"] = np.array(text)
    arrays["__meta_sha256__"] = np.array(hashlib.sha256(text.encode()).hexdigest())
    np.savez(path, **arrays)


def test_tampered_values_and_foreign_classes_are_refused(tmp_path):
    params = make_params()
    opt, sched = full_optimizer(params)
    run(opt, params, 2, sched=sched)
    path = tmp_path / "ck.npz"
    opt.save(path)
    before = snapshot(opt, params)

    def poke(meta, arrays):
        arrays["moment/w1"] = arrays["moment/w1"] + np.float32(1e-3)
    _rewrite(path, poke)
    with pytest.raises(CheckpointError, match="'moment/w1' does not match its checksum"):
        opt.restore(path)

    opt.save(path)

    def evil(meta, arrays):
        meta["config"]["grad_clip"] = {"__class__": "os.system", "__dict__": {}}
    _rewrite(path, evil)
    with pytest.raises(CheckpointError, match="refusing to build 'os.system'"):
        ae.Adamax.load(path, make_params())
    np.savez(path, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an adamax-engine checkpoint"):
        opt.restore(path)
    assert_same(snapshot(opt, params), before)


def test_mismatches_name_the_parameter(tmp_path):
    params = make_params()
    opt = ae.Adamax(learning_rate=0.01, parameters=params)
    run(opt, params, 2)
    path = tmp_path / "ck.npz"
    opt.save(path)
    renamed = make_params(names="v")
    with pytest.raises(CheckpointError, match="no parameter named 'v0'.*match='order'"):
        ae.Adamax.load(path, renamed)
    opt2 = ae.Adamax.load(path, renamed, match="order")  # by position works
    np.testing.assert_array_equal(renamed[1].data, params[1].data)
    assert opt2.state_dict()["w1_moment_0"].shape == (33,)
    wrong = make_params()
    wrong[2] = ae.Parameter(np.ones((2, 3, 5), np.float32), name="w2")
    before = [p.data.copy() for p in wrong]
    with pytest.raises(CheckpointError, match=r"'w2' is float32\[2, 3, 4\]"):
        ae.Adamax.load(path, wrong)
    for p, b in zip(wrong, before):
        np.testing.assert_array_equal(p.data, b)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ae.Adamax.load(tmp_path / "missing.npz", wrong)


def test_lambda_scheduler_must_be_passed_back(tmp_path):
    params = make_params()
    sched = LambdaDecay(0.1, lambda e: 0.9 ** e)
    opt = ae.Adamax(learning_rate=sched, parameters=params)
    run(opt, params, 2, sched=sched)
    opt.save(tmp_path / "ck.npz")
    with pytest.raises(CheckpointError, match="pass learning_rate="):
        ae.Adamax.load(tmp_path / "ck.npz", make_params())
    sched2 = LambdaDecay(0.1, lambda e: 0.9 ** e)
    opt2 = ae.Adamax.load(tmp_path / "ck.npz", make_params(), learning_rate=sched2)
    assert sched2.last_epoch == 2 and opt2.get_lr() == sched.last_lr


def test_torch_to_numpy_to_paddle(tmp_path):
    torch = pytest.importorskip("torch")
    paddle = pytest.importorskip("paddle")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    opt = ae.Adamax(learning_rate=0.02, parameters=model.named_parameters(),
                    grad_clip=ae.ClipGradByValue(0.5))
    shapes = [tuple(p.shape) for p in model.parameters()]

    def feed(ps, t, assign):
        for p, g in zip(ps, grads_for(t, shapes)):
            assign(p, g)
    for t in range(3):
        feed(list(model.parameters()), t, lambda p, g: setattr(p, "grad", torch.from_numpy(g)))
        opt.step()
    opt.save(tmp_path / "torch.npz")
    nps = [ae.Parameter(np.zeros(s, np.float32), name=n) for n, s in
           zip([n for n, _ in model.named_parameters()], shapes)]
    opt_np = ae.Adamax.load(tmp_path / "torch.npz", nps)
    for t in range(3, 5):
        feed(list(model.parameters()), t, lambda p, g: setattr(p, "grad", torch.from_numpy(g)))
        opt.step()
        feed(nps, t, lambda p, g: setattr(p, "grad", g))
        opt_np.step()
    for p, q in zip(model.parameters(), nps):
        np.testing.assert_array_equal(p.detach().numpy(), q.data)
    opt_np.save(tmp_path / "numpy.npz")
    layers = [paddle.create_parameter(list(s), "float32") for s in shapes]
    opt_pd = ae.Adamax.load(tmp_path / "numpy.npz", layers, match="order")
    for t in range(5, 7):
        feed(nps, t, lambda p, g: setattr(p, "grad", g))
        opt_np.step()
        for p, g in zip(layers, grads_for(t, shapes)):
            p.grad = paddle.to_tensor(g)
        opt_pd.step()
    for p, q in zip(layers, nps):
        np.testing.assert_array_equal(p.numpy(), q.data)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import adamax_engine as ae
    from test_checkpoint import grads_for, make_params
    params = make_params()
    opt = ae.Adamax(learning_rate=0.01, parameters=params)
    t = 0
    while True:
        for p, g in zip(params, grads_for(t)):
            p.grad = g
        opt.step()
        t += 1
        opt.save({path!r}, extra={{"step": t}})
        if t == 1:
            print("ready", flush=True)
""")


def test_kill_minus_9_while_saving_leaves_a_whole_checkpoint(tmp_path):
    path = str(tmp_path / "ck.npz")
    script = WRITER.format(tests=os.path.dirname(__file__), path=path)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                cwd=os.path.dirname(os.path.dirname(__file__)))
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        meta, arrays = checkpoint.read(path)  # never a broken file
        step = meta["extra"]["step"]
        seen.add(step)
        params = make_params()  # replay to that step: the file is exactly that state
        opt = ae.Adamax(learning_rate=0.01, parameters=params)
        run(opt, params, step)
        for p in params:
            np.testing.assert_array_equal(arrays[f"param/{p.name}"], p.data)
        assert int(arrays["steps/w0"][0]) == step
    assert seen  # (which steps were hit depends on the machine's speed)
