"""Checkpoints from buggy or foreign writers: restore is all-or-nothing and every failure is a
CheckpointError naming the file; saves clean up what killed writers left behind."""
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

import adamax_engine as ae
from adamax_engine.io import archive
from adamax_engine.io.checkpoint import CheckpointError


def make(seed=0, clip=None, sched=None):
    rng = np.random.default_rng(seed)
    ps = [ae.Parameter(rng.standard_normal(3).astype(np.float32), name=f"p{i}") for i in range(2)]
    opt = ae.Adamax(sched or 0.05, parameters=ps, grad_clip=clip)
    return ps, opt


def saved(tmp_path, clip=None, sched=None):
    ps, opt = make(1, clip, sched)
    rng = np.random.default_rng(2)
    for _ in range(2):
        for p in ps:
            p.grad = rng.standard_normal(3).astype(np.float32)
        opt.step()
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    return path


def state_of(ps, opt):
    return [p.data.copy() for p in ps], {k: np.array(v, copy=True)
                                         for k, v in opt.state_dict().items()}


def unchanged(before, after):
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    assert before[1].keys() == after[1].keys()
    for k in before[1]:
        np.testing.assert_array_equal(before[1][k], after[1][k])


def rewrite(path, arrays=None, meta=None):
    """Write a checkpoint whose checksums are consistent: what a buggy writer could make."""
    got_meta, got_arrays = archive.read(path)
    got_meta.pop("checksums"), got_meta.pop("bfloat16")
    arrays = arrays(got_arrays) if arrays else got_arrays
    archive.write(meta(got_meta) if meta else got_meta, arrays, path)


def raw_meta(path, change):
    """Replace the __meta__ text (and its own checksum) with ``change(text)``."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    text = change(str(arrays["__meta__"]))
    arrays["__meta__"] = np.array(text)
    arrays["__meta_sha256__"] = np.array(hashlib.sha256(text.encode()).hexdigest())
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


WRONG_CONTENT = [
    (lambda a: {**a, "param/p1": np.zeros(5, np.float32)}, r"'param/p1' is float32\[5\]"),
    (lambda a: {k: v for k, v in a.items() if k != "moment/p1"}, "'moment/p1' is missing"),
    (lambda a: {**a, "moment/p1": a["moment/p1"].astype(np.float64)}, "'moment/p1' is float64"),
    (lambda a: {**a, "steps/p0": a["steps/p0"].astype(np.int32)}, "'steps/p0' is int32"),
    (lambda a: {**a, "inf_norm/p1": -a["inf_norm/p1"]}, "inf_norm of 'p1': expected finite "
                                                        "values >= 0"),
    (lambda a: {**a, "beta1_pow/p0": np.ones(1, np.float32)}, r"beta1_pow_acc of 'p0'"),
]


@pytest.mark.parametrize("corrupt, msg", WRONG_CONTENT)
def test_wrong_content_with_good_checksums_changes_nothing(tmp_path, corrupt, msg):
    path = saved(tmp_path)
    rewrite(path, arrays=corrupt)
    ps, opt = make(3)
    for p in ps:
        p.grad = np.ones(3, np.float32)
    opt.step()
    before = state_of(ps, opt)
    with pytest.raises(CheckpointError, match=msg) as info:
        opt.restore(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    unchanged(before, state_of(ps, opt))


def test_a_diverged_state_loads_only_when_asked(tmp_path):
    path = saved(tmp_path)
    rewrite(path, arrays=lambda a: {**a, "moment/p0": a["moment/p0"] * np.inf})
    ps, opt = make()
    with pytest.raises(CheckpointError, match="moment of 'p0': expected finite"):
        opt.restore(path)
    opt.restore(path, check_values=False)
    assert np.isinf(opt.state_dict()["p0_moment_0"]).all()


FOREIGN_META = [  # (restore ignores the saved config: the objects in it matter to Adamax.load)
    (lambda t: "[1, 2]", "__meta__ must be a JSON object"),
    (lambda t: "{not json", "__meta__ is not JSON"),
    (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "checksums"}),
     "'checksums' is missing"),
    (lambda t: t.replace('"multi_precision": false', '"multi_precision": "no"'),
     "multi_precision: expected a bool"),
    (lambda t: t.replace('"shape": [3]', '"shape": [-3]', 1), r"shape: expected a list of ints"),
    (lambda t: t.replace("adamax_engine.transforms.clip.ClipGradByGlobalNorm",
                         "adamax_engine.clip.np.ndarray"), "load only: refusing to build"),
    (lambda t: t.replace("adamax_engine.transforms.clip.ClipGradByGlobalNorm",
                         "os.system"), "load only: refusing to build 'os.system'"),
    (lambda t: t.replace('"clip_norm": 1.0', '"clip_norm": "DROP TABLE"'),
     "load only: ClipGradByGlobalNorm: clip_norm: expected a float"),
    (lambda t: t.replace('"clip_norm": 1.0', '"clip_norm": NaN'),
     "load only: expected a finite number"),
    (lambda t: t.replace('"last_epoch": 0', '"last_epoch": "abc"'),
     r"last_epoch.*: expected (a number|an int), got 'abc'"),
]


@pytest.mark.parametrize("change, msg", FOREIGN_META)
def test_foreign_metadata_is_a_checkpoint_error(tmp_path, change, msg):
    path = saved(tmp_path, clip=ae.ClipGradByGlobalNorm(1.0), sched=ae.lr.StepDecay(0.05, 5))
    raw_meta(path, change)
    ps, opt = make(clip=ae.ClipGradByGlobalNorm(1.0), sched=ae.lr.StepDecay(0.05, 5))
    before = state_of(ps, opt)
    loads = [lambda: ae.Adamax.load(path, ps)]
    if not msg.startswith("load only: "):
        loads.append(lambda: opt.restore(path))
    for load in loads:
        with pytest.raises(CheckpointError, match=msg.replace("load only: ", "")):
            load()
    unchanged(before, state_of(ps, opt))


def test_byte_flips_and_other_files_are_checkpoint_errors(tmp_path):
    path = saved(tmp_path)
    good = path.read_bytes()
    ps, opt = make()
    before = state_of(ps, opt)
    rng = np.random.default_rng(0)
    spots = sorted(set(rng.integers(0, len(good), 120).tolist())
                   | set(range(len(good) - 200, len(good), 3)))  # the zip directory is at the end
    failures = 0
    for offset in spots:
        data = bytearray(good)
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        ps, opt = make()
        try:
            opt.restore(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            failures += 1
            unchanged(before, state_of(ps, opt))
    assert failures > len(spots) // 2  # nearly every flip is caught (checksums, zip CRCs)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.ones(3))
    for other in (npy, tmp_path / "missing.npz"):
        with pytest.raises(CheckpointError, match=str(other.name)):
            opt.restore(other)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        opt.restore(text)


def test_a_save_removes_temp_files_of_dead_writers_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    path = tmp_path / "ckpt.npz"
    stale = tmp_path / f"ckpt.npz.tmp.{dead}"
    alive = tmp_path / "ckpt.npz.tmp.1"  # pid 1 is alive
    other = tmp_path / "other.npz.tmp.99999999"
    for f in (stale, alive, other):
        f.write_bytes(b"x" * 100)
    ps, opt = make()
    opt.save(path)
    assert not stale.exists() and alive.exists() and other.exists() and path.exists()
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(
        ["ckpt.npz", alive.name, other.name])
