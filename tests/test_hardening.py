"""Bad input gets one clear line naming what was wrong, and changes nothing: the optimizer API
(non-finite settings, impossible state) and names that do not depend on the process's history."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adamax_engine as ae

NAN, INF = float("nan"), float("inf")


def params(n=2, names=True):
    rng = np.random.default_rng(0)
    return [ae.Parameter(rng.standard_normal(3 + i).astype(np.float32),
                         name=f"p{i}" if names else None) for i in range(n)]


NON_FINITE_SETTINGS = [
    (lambda: ae.Adamax(NAN, parameters=params()), "learning_rate: expected a finite number"),
    (lambda: ae.Adamax(INF, parameters=params()), "learning_rate: expected a finite number"),
    (lambda: ae.Adamax(1e308, parameters=params()), r"learning_rate: .* got 1e\+308"),
    (lambda: ae.Adamax(0.1, epsilon=INF, parameters=params()), "epsilon: expected a finite"),
    (lambda: ae.Adamax(0.1, parameters=[{"params": params(), "learning_rate": NAN}]),
     r"parameters\[0\]\['learning_rate'\]: expected a finite number"),
    (lambda: ae.Adamax(0.1, parameters=[{"params": params(), "epsilon": INF}]),
     r"epsilon \(parameters\[0\]\): expected a finite number"),
    (lambda: ae.Parameter(np.ones(3, np.float32), learning_rate=NAN),
     "learning_rate: expected a finite number"),
    (lambda: ae.ClipGradByGlobalNorm(NAN), "clip_norm: expected a finite number"),
    (lambda: ae.ClipGradByGlobalNorm(INF), "clip_norm: expected a finite number"),
    (lambda: ae.ClipGradByNorm(INF), "clip_norm: expected a finite number"),
    (lambda: ae.ClipGradByValue(NAN), "max: expected a finite number"),
    (lambda: ae.ClipGradByValue(1.0, -INF), "min: expected a finite number"),
    (lambda: ae.L2Decay(NAN), "coeff: expected a finite float"),
    (lambda: ae.Adamax(0.1, parameters=params(), weight_decay=INF), "coeff: expected a finite"),
]


@pytest.mark.parametrize("make, msg", NON_FINITE_SETTINGS)
def test_non_finite_settings_are_refused_with_one_line(make, msg):
    with pytest.raises(ValueError, match=msg) as info:
        make()
    assert "\n" not in str(info.value)


def test_set_lr_refuses_non_finite_and_keeps_the_lr():
    opt = ae.Adamax(0.1, parameters=params())
    for bad in (NAN, INF, -INF, 1e300):
        with pytest.raises(ValueError, match="value: expected a finite number"):
            opt.set_lr(bad)
        assert opt.get_lr() == 0.1


def stepped(flavor="paddle", multi_precision=False, sched=None):
    rng = np.random.default_rng(1)
    dt = np.float16 if multi_precision else np.float32
    ps = [ae.Parameter(rng.standard_normal(4).astype(dt), name=f"p{i}") for i in range(2)]
    opt = ae.Adamax(sched or 0.05, parameters=ps, flavor=flavor, multi_precision=multi_precision)
    for _ in range(2):
        for p in ps:
            p.grad = rng.standard_normal(4).astype(dt)
        opt.step()
    return ps, opt


def snapshot(opt, ps):
    sd = opt.state_dict()
    return ([np.array(p.data, copy=True) for p in ps],
            {k: (dict(v) if isinstance(v, dict) else np.array(v, copy=True))
             for k, v in sd.items()})


def same(a, b):
    (pa, sa), (pb, sb) = a, b
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(pa, pb))
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], dict):
            assert sa[k].keys() == sb[k].keys()
            for j in sa[k]:
                assert np.array_equal(np.asarray(sa[k][j]), np.asarray(sb[k][j]),
                                      equal_nan=True), (k, j)
        else:
            assert np.array_equal(sa[k], sb[k], equal_nan=True), k


def nan_at_0(a):
    a = np.array(a, copy=True, dtype=np.float64 if np.asarray(a).dtype.kind in "iu" else None)
    a.reshape(-1)[0] = np.nan
    return a


IMPOSSIBLE_STATE = [
    ("paddle", "p0_moment_0", nan_at_0, r"state_dict\['p0_moment_0'\]: expected finite values"),
    ("paddle", "p1_inf_norm_0", lambda a: -np.abs(a),
     r"state_dict\['p1_inf_norm_0'\]: expected finite values >= 0"),
    ("paddle", "p0_beta1_pow_acc_0", lambda a: np.ones_like(a),
     r"state_dict\['p0_beta1_pow_acc_0'\]: expected a value in \[0, 1\), got 1.0"),
    ("paddle", "p0_beta1_pow_acc_0", nan_at_0, r"beta1_pow_acc_0'\]: expected a value in"),
    ("torch", "p0_step_0", lambda a: -a, r"state_dict\['p0_step_0'\]: expected a count >= 0"),
]


@pytest.mark.parametrize("flavor, key, corrupt, msg", IMPOSSIBLE_STATE)
def test_set_state_dict_refuses_values_no_run_produces(flavor, key, corrupt, msg):
    ps, opt = stepped(flavor)
    before = snapshot(opt, ps)
    sd = {k: np.array(v, copy=True) * 1 for k, v in opt.state_dict().items()}
    sd[key] = corrupt(sd[key])
    with pytest.raises(ValueError, match=msg):
        opt.set_state_dict(sd)
    same(before, snapshot(opt, ps))
    opt.set_state_dict(sd, check_values=False)  # the escape hatch: a diverged run's state
    np.testing.assert_array_equal(opt.state_dict()[key], sd[key])


def test_master_weights_and_scheduler_state_are_checked_before_anything_changes():
    ps, opt = stepped(multi_precision=True)
    before = snapshot(opt, ps)
    sd = opt.state_dict()
    doubled = {k: np.array(v) * 0.5 for k, v in sd.items() if k != "master_weights"}
    for masters, exc, msg in (([], TypeError, r"state_dict\['master_weights'\]: expected a dict"),
                              ({"p0": nan_at_0(sd["master_weights"]["p0"])}, ValueError,
                               r"state_dict\['master_weights'\]\['p0'\]: expected finite")):
        with pytest.raises(exc, match=msg):
            opt.set_state_dict({**doubled, "master_weights": masters})
        same(before, snapshot(opt, ps))
    ps, opt = stepped(sched=ae.lr.StepDecay(0.05, 2))
    before = snapshot(opt, ps)
    sd = {k: (v if isinstance(v, dict) else np.array(v) * 0.5) for k, v in opt.state_dict().items()}
    for bad, exc, msg in (({"last_epoch": "abc", "last_lr": 0.1}, TypeError,
                           r"\['LR_Scheduler'\]\['last_epoch'\]: expected a number"),
                          ({"last_epoch": 1.5, "last_lr": 0.1}, TypeError, "expected an int"),
                          ({"last_epoch": 1, "last_lr": NAN}, ValueError, "expected a finite"),
                          ("x", TypeError, r"state_dict\['LR_Scheduler'\]: expected a dict")):
        with pytest.raises(exc, match=msg):
            opt.set_state_dict({**sd, "LR_Scheduler": bad})
        same(before, snapshot(opt, ps))


def test_unnamed_parameters_are_named_by_position_so_checkpoints_round_trip(tmp_path):
    def build():
        ps = params(3, names=False)
        return ps, ae.Adamax(0.05, parameters=ps)
    ps, opt = build()
    assert [p.name for p in ps] == ["param_0", "param_1", "param_2"]
    rng = np.random.default_rng(2)
    for p in ps:
        p.grad = rng.standard_normal(p.data.shape).astype(np.float32)
    opt.step()
    opt.save(tmp_path / "ckpt.npz")
    sd = {k: np.array(v, copy=True) for k, v in opt.state_dict().items()}
    for _ in range(3):  # other optimizers and parameters made in between change nothing
        build()
    fresh, opt2 = build()
    opt2.restore(tmp_path / "ckpt.npz")
    for a, b in zip(ps, fresh):
        np.testing.assert_array_equal(a.data, b.data)
    again, opt3 = build()
    opt3.set_state_dict(sd)
    np.testing.assert_array_equal(opt3.state_dict()["param_1_moment_0"], sd["param_1_moment_0"])


MUTATIONS = ["nan", "inf", "negative", "float64", "reshape", "scalar", "list", "drop", "extra",
             "string", "one", "half"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from(MUTATIONS)), min_size=1,
                max_size=3))
def test_fuzz_set_state_dict_is_one_line_error_or_success_never_half_applied(edits):
    """Whatever is handed to set_state_dict: success (the state is then the given one) or one
    error line, with the optimizer exactly as before."""
    ps, opt = stepped("torch")
    before = snapshot(opt, ps)
    sd = {k: np.array(v, copy=True) for k, v in opt.state_dict().items()}
    keys = sorted(sd)
    for which, how in edits:
        key = keys[which % len(keys)]
        if not isinstance(sd.get(key), np.ndarray):
            continue  # dropped, or already not an array
        v = sd[key]
        sd[key] = {"nan": lambda: nan_at_0(v), "inf": lambda: v + np.inf,
                   "negative": lambda: -np.abs(v) - 1, "float64": lambda: v.astype(np.float64),
                   "reshape": lambda: v.reshape(-1, 1), "scalar": lambda: v.reshape(-1)[0],
                   "list": lambda: v.tolist(), "drop": lambda: None, "extra": lambda: v,
                   "string": lambda: "x", "one": lambda: np.ones_like(v),
                   "half": lambda: v * 0.5}[how]()
        if how == "drop":
            del sd[key]
        if how == "extra":
            sd[f"zz_{key}"] = v
    try:
        opt.set_state_dict(sd)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        assert "\n" not in str(exc) and str(exc)
        same(before, snapshot(opt, ps))
        return
    got = opt.state_dict()
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v)
    assert all(math.isfinite(float(x)) for k in got for x in np.asarray(got[k]).reshape(-1))


# --- YAML files that are not configs --------------------------------------------------------------
def run_cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "adamax_engine.cli", *args],
                          capture_output=True, text=True, timeout=60)


def alias_bomb(levels):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\noptimizer: {learning_rate: 0.1}\n"


def test_an_alias_bomb_is_answered_in_under_a_second(tmp_path):
    import time
    from adamax_engine.config import ConfigError, load_yaml
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))  # 9**9 = 387M leaves if expanded
    t0 = time.perf_counter()
    data, src = load_yaml(path)
    assert time.perf_counter() - t0 < 1.0
    assert src.lines["a8"] == 9 and src.lines["optimizer.learning_rate"] == 10
    out = run_cli("validate", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "a0: unknown key" in out.stderr and out.stderr.count("\n") == 1
    assert isinstance(ConfigError("x"), ValueError)


@pytest.mark.parametrize("content, msg", [
    ("optimizer: {learning_rate: 0.1}\n# caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
    ("optimizer: {learning_rate: 0.1}\n".encode("utf-16"), "not UTF-8 text"),
    (b"[" * 20000 + b"]" * 20000, "nested too deeply"),
    (b"a:\n" + b"".join(b" " * i + b"b:\n" for i in range(1, 1200)), "nested too deeply"),
    (b"x: 1\n" * 300000, "larger than 1 MiB"),
])
def test_files_that_are_not_configs_get_one_line(tmp_path, content, msg):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    out = run_cli("validate", str(path))
    assert out.returncode == 2, out.stderr
    assert msg in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and str(path) in out.stderr


def test_dev_zero_is_not_read_forever():
    out = run_cli("validate", "/dev/zero")
    assert out.returncode == 2 and "larger than 1 MiB" in out.stderr


NON_FINITE_FIELDS = ["optimizer.learning_rate=.nan", "optimizer.epsilon=.inf",
                     "optimizer.beta1=.nan", "optimizer.grad_clip.clip_norm=.inf",
                     "optimizer.weight_decay=.nan", "optimizer.lr_scheduler.warmup.start_lr=.nan",
                     "optimizer.groups=[{match: ['*.bias'], learning_rate: .nan}]",
                     "optimizer.grad_clip={type: value, max: .nan}",
                     "optimizer.lr_scheduler={type: PiecewiseDecay, boundaries: [10], "
                     "values: abc}",
                     "optimizer.lr_scheduler={type: PiecewiseDecay, boundaries: [10], "
                     "values: [0.1, .inf]}",
                     "problem={name: mlp_spirals, turns: .nan}",
                     "problem={name: quadratic, condition: .inf}",
                     "distributed={bucket_mb: .inf}"]


@pytest.mark.parametrize("setting", NON_FINITE_FIELDS)
def test_validate_refuses_non_finite_and_nonsense_values(setting):
    out = run_cli("validate", "configs/default.yaml", "--set", setting)
    field = setting.split("=")[0]
    assert out.returncode == 2, out.stdout
    assert field in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1


@pytest.mark.parametrize("setting, msg", [
    ("experiment.name=/abs/path", "experiment.name: expected a plain name"),
    ("experiment.name=..", "experiment.name: expected a plain name"),
    ("problem.samples=1000000000000", r"problem: softmax_blobs of this size needs about"),
    ("problem={name: quadratic, dim: 1000000}", r"needs about 2.98e\+04 GiB"),
])
def test_run_names_and_sizes_are_checked_up_front(setting, msg):
    import re
    out = run_cli("validate", "configs/default.yaml", "--set", setting)
    assert out.returncode == 2 and re.search(msg, out.stderr), out.stderr
    assert out.stderr.count("\n") == 1


@pytest.mark.parametrize("args, msg", [
    (["--sizes", "inf"], "--sizes: expected comma-separated whole numbers >= 1, got 'inf'"),
    (["--sizes", "-5"], "--sizes: expected comma-separated whole numbers >= 1, got '-5'"),
    (["--sizes", "1e3,abc"], "got 'abc'"),
    (["--threads", "0"], "--threads: expected comma-separated whole numbers >= 1, got '0'"),
    (["--reps", "-1"], "--reps: expected a whole number >= 1, got -1"),
])
def test_bench_arguments_are_checked(args, msg):
    out = run_cli("bench", *args, "--no-cold")
    assert out.returncode == 2 and msg in out.stderr and out.stderr.count("\n") == 1


def test_resume_from_a_checkpoint_not_written_by_run_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint").mkdir(parents=True)
    ps = [ae.Parameter(np.ones(3, np.float32), name="linear.weight")]
    ae.Adamax(0.1, parameters=ps).save(run_dir / "checkpoint" / "checkpoint.npz")
    out = run_cli("run", "configs/default.yaml", "--resume", str(run_dir), "--no-progress")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "--resume" in out.stderr and out.stderr.strip().count("\n") == 0


# --- fuzz: whatever YAML document, one line or a valid spec -------------------------------------
_KEYS = {"experiment": ["steps", "seed", "log_every", "checkpoint_every", "name"],
         "problem": ["name", "samples", "features", "classes", "hidden", "turns", "dim",
                     "condition", "noise"],
         "optimizer": ["learning_rate", "beta1", "beta2", "epsilon", "flavor", "weight_decay",
                       "grad_clip", "lr_scheduler", "groups", "skip_nonfinite", "name", "mode"],
         "distributed": ["shard_state", "bucket_mb", "backend"],
         "sweep": ["grid"], "model": ["framework"], "junk": ["x"]}
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**15, 10**15),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                     st.sampled_from(["softmax_blobs", "quadratic", "torch", "paddle", "value",
                                      "global_norm", "StepDecay", "PiecewiseDecay", "*.bias"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["type", "clip_norm", "max", "min", "step_size", "boundaries", "values", "match",
         "learning_rate", "warmup", "steps", "start_lr", "T_max", "name", "coeff"]), inner,
        max_size=3)), max_leaves=8)
_DOCS = st.dictionaries(st.sampled_from(sorted(_KEYS)), st.one_of(
    _VALUES, st.dictionaries(st.sampled_from(sum(_KEYS.values(), [])), _VALUES, max_size=4)),
    max_size=4)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_DOCS)
def test_fuzz_yaml_documents_give_a_spec_or_one_line(tmp_path_factory, doc):
    import yaml

    from adamax_engine.cli import load_spec
    from adamax_engine.config import ConfigError
    path = tmp_path_factory.mktemp("fuzz") / "doc.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        spec = load_spec(str(path))
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert spec["experiment"]["steps"] >= 1 and spec["problem"]["name"]


def test_sweep_grid_values_are_validated_like_the_config():
    out = run_cli("validate", "configs/sweep_lr_flavor.yaml", "--set",
                  "sweep.grid={optimizer.learning_rate: [0.1, .nan], optimizer.flavor: [torch]}")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "optimizer.learning_rate: expected a finite number, got nan" in out.stderr


def test_unnamed_torch_parameters_round_trip_through_a_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    m = model()
    opt = ae.Adamax(0.05, parameters=m.parameters(), flavor="torch")
    m(torch.ones(5, 3)).sum().backward()
    opt.step()
    opt.save(tmp_path / "t.npz")
    for _ in range(2):  # other models and optimizers in between change nothing
        ae.Adamax(0.05, parameters=model().parameters(), flavor="torch")
    fresh = model()
    ae.Adamax(0.05, parameters=fresh.parameters(), flavor="torch").restore(tmp_path / "t.npz")
    for a, b in zip(m.parameters(), fresh.parameters()):
        assert torch.equal(a.detach(), b.detach())


def test_a_failed_build_names_no_parameter():
    ps = params(2, names=False)
    with pytest.raises(ValueError, match="mode: expected one of"):
        ae.Adamax(0.1, parameters=ps, mode="lend")
    assert [p.name for p in ps] == [None, None]
    ae.Adamax(0.1, parameters=ps)
    assert [p.name for p in ps] == ["param_0", "param_1"]
