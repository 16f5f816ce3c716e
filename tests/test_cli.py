"""The experiments CLI: every shipped config runs, resume == uninterrupted, sweeps, exit codes."""
import csv
import glob
import json
import os

import numpy as np
import pytest

from adamax_engine import cli
from adamax_engine.io import checkpoint

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))


def read_metrics(folder):
    with open(os.path.join(folder, "metrics.csv"), encoding="utf-8") as fh:
        return [(int(r["step"]), float(r["loss"]), float(r["lr"])) for r in csv.DictReader(fh)]


def test_default_config_trains_and_loss_falls(tmp_path):
    out = tmp_path / "default"
    assert cli.main(["run", os.path.join(ROOT, "configs", "default.yaml"), "--out", str(out),
                     "--no-progress", "--set", "experiment.steps=80",
                     "--set", "experiment.checkpoint_every=40"]) == 0
    rows = read_metrics(out)
    assert len(rows) == 80 and rows[-1][1] < 0.6 * rows[0][1]
    assert rows[0][2] == 0.0 and rows[20][2] == 0.05  # warmup from 0 to the base lr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_loss"] == rows[-1][1] and summary["accuracy"] > 0.6
    meta, _ = checkpoint.read(out / "checkpoint" / "checkpoint.npz")
    assert meta["extra"]["step"] == 80
    plots = pytest.importorskip("matplotlib")
    assert plots and (out / "curves.png").stat().st_size > 1000


@pytest.mark.parametrize("config", CONFIGS, ids=os.path.basename)
def test_every_shipped_config_runs(tmp_path, config):
    out = tmp_path / "out"
    assert cli.main(["validate", config]) == 0
    assert cli.main(["run", config, "--out", str(out), "--no-progress",
                     "--set", "experiment.steps=25"]) == 0
    folders = sorted(glob.glob(str(out / "point_*"))) or [str(out)]
    for folder in folders:
        rows = read_metrics(folder)
        assert len(rows) == 25 and all(np.isfinite([r[1] for r in rows]))
        assert rows[-1][1] < rows[0][1]  # the loss falls


def test_resume_equals_uninterrupted_run(tmp_path):
    cfg = os.path.join(ROOT, "configs", "spirals_mlp.yaml")
    common = ["--no-progress", "--set", "experiment.checkpoint_every=10",
              "--set", "optimizer.lr_scheduler={type: OneCycleLR, total_steps: 40}"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main(["run", cfg, "--out", str(full), "--set", "experiment.steps=40", *common]) == 0
    assert cli.main(["run", cfg, "--out", str(part), "--set", "experiment.steps=25", *common]) == 0
    meta, _ = checkpoint.read(part / "checkpoint" / "checkpoint.npz")
    assert meta["extra"]["step"] == 20  # the last checkpoint before the interruption at 25
    assert cli.main(["run", cfg, "--resume", str(part), "--set", "experiment.steps=40",
                     *common]) == 0
    assert read_metrics(part) == read_metrics(full)
    with np.load(full / "checkpoint" / "checkpoint.npz", allow_pickle=False) as a, \
            np.load(part / "checkpoint" / "checkpoint.npz", allow_pickle=False) as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_sweep_writes_one_table_and_plot(tmp_path):
    out = tmp_path / "sweep"
    assert cli.main(["run", os.path.join(ROOT, "configs", "sweep_lr_flavor.yaml"), "--out",
                     str(out), "--no-progress", "--set", "experiment.steps=15"]) == 0
    with open(out / "sweep.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["optimizer.learning_rate"], r["optimizer.flavor"]) for r in rows] == [
        (lr, fl) for lr in ("0.003", "0.03", "0.3") for fl in ("paddle", "torch")]
    for i, r in enumerate(rows, start=1):  # points count from 1, as the progress lines do
        assert float(r["final_loss"]) == read_metrics(out / f"point_{i}")[-1][1]
    for flavor in ("paddle", "torch"):  # the learning rates really differ
        assert len({r["final_loss"] for r in rows if r["optimizer.flavor"] == flavor}) == 3
    if pytest.importorskip("matplotlib"):
        assert (out / "sweep.png").stat().st_size > 1000


def test_sweep_summary_is_a_table_stores_null_and_resumes_point_by_point(tmp_path, capsys):
    import json
    out = tmp_path / "sweep"
    args = ["run", os.path.join(ROOT, "configs", "sweep_lr_flavor.yaml"), "--out", str(out),
            "--no-progress", "--set", "experiment.steps=5", "--set", "problem=rosenbrock"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    header = next(line for line in printed if line.startswith("point"))
    assert header.split() == ["point", "learning_rate", "flavor", "final_loss", "best_loss",
                              "accuracy", "seconds"]
    assert "{" not in "".join(printed) and printed[-1].startswith("best: point ")
    table = json.loads((out / "sweep.json").read_text())
    assert [r["point"] for r in table] == [1, 2, 3, 4, 5, 6]
    assert all(r["accuracy"] is None for r in table)  # rosenbrock has none: null, not ""
    first = (out / "point_3" / "metrics.csv").read_text()
    (out / "point_4" / "summary.json").unlink()  # as if killed during point 4
    assert cli.main(args) == 0
    again = capsys.readouterr().out
    assert again.count("done before, kept") == 5 and "[4/6] learning_rate=0.03, flavor=torch" \
        in again
    assert (out / "point_3" / "metrics.csv").read_text() == first
    assert json.loads((out / "sweep.json").read_text())[3]["final_loss"] == table[3]["final_loss"]


@pytest.mark.filterwarnings("ignore:overflow")
def test_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("experiment: {steps: 3}\noptimizer: {learning_rate: 0.01}\n")
    assert cli.main(["run", str(good), "--out", str(tmp_path / "g"), "--no-progress"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer: {learnig_rate: 0.01}\n")
    assert cli.main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:1: optimizer.learnig_rate: unknown key" in err and "Traceback" not in err
    assert cli.main(["validate", str(bad)]) == 2
    assert cli.main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert cli.main(["run", str(good), "--set", "nonsense"]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["run", str(good), "--resume", str(tmp_path / "nothing"),
                     "--no-progress"]) == 1  # no checkpoint there: a runtime failure
    diverge = tmp_path / "diverge.yaml"
    diverge.write_text("problem: {name: teacher_student}\nexperiment: {steps: 50}\n"
                       "optimizer: {learning_rate: 1.0e+30}\n")  # float32: overflows
    assert cli.main(["run", str(diverge), "--out", str(tmp_path / "d"), "--no-progress"]) == 1
    assert "diverged" in capsys.readouterr().err


def test_digits_problem_when_scikit_learn_is_installed(tmp_path):
    pytest.importorskip("sklearn")
    cfg = tmp_path / "digits.yaml"
    cfg.write_text("problem: {name: digits, hidden: 16}\nexperiment: {steps: 30}\n"
                   "optimizer: {learning_rate: 0.01}\n")
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    rows = read_metrics(tmp_path / "o")
    assert rows[-1][1] < rows[0][1]


@pytest.mark.parametrize("config", ["spirals_mlp", "teacher_student", "default"])
def test_torch_backend_matches_numpy_backend(tmp_path, config):
    """model.framework: torch (autograd, torch's memory stepped in place by the engine) follows
    the numpy backend's curve: same data, same initial weights, same optimizer."""
    pytest.importorskip("torch")
    cfg = os.path.join(ROOT, "configs", f"{config}.yaml")
    for fw in ("numpy", "torch"):
        assert cli.main(["run", cfg, "--out", str(tmp_path / fw), "--no-progress",
                         "--set", "experiment.steps=30", "--set", f"model.framework={fw}"]) == 0
    a, b = read_metrics(tmp_path / "numpy"), read_metrics(tmp_path / "torch")
    assert a[0][1] == pytest.approx(b[0][1], rel=1e-6)
    np.testing.assert_allclose([r[1] for r in b], [r[1] for r in a], rtol=1e-3)
    assert [r[2] for r in a] == [r[2] for r in b]


def test_torch_backend_steps_the_modules_own_memory():
    torch = pytest.importorskip("torch")
    from adamax_engine.experiments import runner, spec as S
    from adamax_engine.config import Source
    spec = S.validate({"problem": {"name": "mlp_spirals", "samples": 64, "hidden": 8},
                       "model": {"framework": "torch"}, "optimizer": {"learning_rate": 0.1}},
                      Source())
    problem, opt = runner.build(spec)
    before = [t.detach().clone() for t in problem.tensors]
    problem.loss_and_grads()
    opt.step()
    for t, b, p in zip(problem.tensors, before, problem.params):
        assert not torch.equal(t.detach(), b)
        np.testing.assert_array_equal(t.detach().numpy(), p.data)  # one memory
    with pytest.raises(RuntimeError, match="has no model for problem 'rosenbrock'"):
        runner.build(S.validate({"problem": "rosenbrock", "model": {"framework": "torch"}},
                                Source()))
