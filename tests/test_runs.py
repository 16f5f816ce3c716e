"""Runs that explain themselves: configs as users write them, errors at the --set that caused
them, a run that fails or is stopped still leaves its metrics, summary and checkpoint."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from adamax_engine import cli

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_numbers_are_read_as_users_write_them(tmp_path, capsys):
    path = write(tmp_path, "problem: {name: softmax_blobs, samples: 1e3}\n"
                           "optimizer: {learning_rate: 1e-3, epsilon: 1E-8,\n"
                           "            weight_decay: {type: L1, coeff: 1e-4}}\n")
    spec = cli.load_spec(path, ["optimizer.beta2=9.99e-1"])
    assert spec["problem"]["samples"] == 1000 and isinstance(spec["problem"]["samples"], int)
    assert spec["optimizer"]["learning_rate"] == 1e-3 and spec["optimizer"]["beta2"] == 0.999
    assert cli.main(["validate", path, "--set", "optimizer.learning_rate=1.0e-2"]) == 0


def test_an_error_in_a_set_value_names_the_set_argument(tmp_path, capsys):
    path = write(tmp_path, "optimizer: {learning_rate: 0.1}\n")
    assert cli.main(["validate", path, "--set", "optimizer.beta1=1.5"]) == 2
    err = capsys.readouterr().err
    assert "--set optimizer.beta1=1.5: optimizer.beta1:" in err and "exp.yaml" not in err
    assert cli.main(["validate", path, "--set", "optimizer={learning_rate: abc}"]) == 2
    assert "--set optimizer={learning_rate: abc}: optimizer.learning_rate" in \
        capsys.readouterr().err


def test_a_schedule_shorter_than_the_run_is_refused_up_front(tmp_path, capsys):
    path = write(tmp_path, "experiment: {steps: 100}\noptimizer:\n  learning_rate: 0.1\n"
                           "  lr_scheduler: {type: OneCycleLR, total_steps: 150}\n")
    assert cli.main(["validate", path]) == 0
    assert cli.main(["validate", path, "--set", "experiment.steps=200"]) == 2
    err = capsys.readouterr().err
    assert "--set experiment.steps=200: experiment.steps: 200 steps, but" in err
    assert "total_steps: 150" in err


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as fh:
        return list(csv.reader(fh))[1:]


@pytest.mark.parametrize("rule, msg", [
    ("max_loss: 1.0e3", "above experiment.max_loss 1000"),
    ("max_loss_ratio: 100", "more than experiment.max_loss_ratio (100) times the first"),
])
def test_a_blow_up_is_reported_and_the_run_keeps_its_outputs(tmp_path, rule, msg):
    path = write(tmp_path, "problem: {name: teacher_student}\n"
                           f"experiment: {{steps: 60, {rule}}}\n"
                           "optimizer: {learning_rate: 10.0}\n")
    out = subprocess.run([sys.executable, "-m", "adamax_engine.cli", "run", path, "--out",
                          str(tmp_path / "r"), "--no-progress"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 1 and msg in out.stderr and "(diverged)" in out.stderr
    assert "Warning" not in out.stderr and "Traceback" not in out.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    rows = read_metrics(tmp_path / "r")
    assert summary["error"].endswith("(diverged)") and summary["steps"] == len(rows) >= 1
    assert (tmp_path / "r" / "config.json").exists()


def test_sigterm_writes_checkpoint_metrics_and_summary_and_resume_continues(tmp_path):
    path = write(tmp_path, "problem: {name: rosenbrock, dim: 4}\n"
                           "experiment: {steps: 100000000, log_every: 5}\n"
                           "optimizer: {learning_rate: 1e-4}\n")
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "adamax_engine.cli", "run", path, "--out",
                             str(run_dir), "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # metrics.csv is written as the run goes
        if (run_dir / "metrics.csv").exists() and len(read_metrics(run_dir)) >= 20:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM at step" in err and "Traceback" not in err
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir)
    assert summary["stopped"] == "SIGTERM" and summary["steps"] == len(rows) >= 20
    from adamax_engine.io.checkpoint import read
    meta, arrays = read(run_dir / "checkpoint" / "checkpoint.npz")
    assert meta["extra"]["step"] == len(rows)
    assert [repr(float(x)) for x in arrays["extra/loss"]] == [r[1] for r in rows]
    # resumed, it continues from that step: the same numbers as a run never stopped
    more = len(rows) + 7
    cli.main(["run", path, "--resume", str(run_dir), "--no-progress", "--set",
              f"experiment.steps={more}"])
    once = tmp_path / "once"
    cli.main(["run", path, "--out", str(once), "--no-progress", "--set",
              f"experiment.steps={more}"])
    assert read_metrics(run_dir) == read_metrics(once)


def test_validate_says_which_defaults_apply(tmp_path, capsys):
    path = write(tmp_path, "")
    assert cli.main(["validate", path]) == 0
    out = capsys.readouterr().out
    assert "no optimizer block: Adamax's defaults (learning_rate 0.001" in out
    assert "no problem block: softmax_blobs" in out and "no experiment block: 200 steps" in out


def test_digits_without_scikit_learn_is_refused_by_validate(tmp_path, capsys):
    import importlib.util
    if importlib.util.find_spec("sklearn") is not None:
        pytest.skip("scikit-learn is installed here")
    assert cli.main(["validate", write(tmp_path, "problem: digits\n")]) == 2
    assert "digits needs scikit-learn" in capsys.readouterr().err


def test_resume_rules(tmp_path, capsys):
    path = write(tmp_path, "problem: {name: rosenbrock}\n"
                           "experiment: {steps: 20, checkpoint_every: 10}\n"
                           "optimizer: {learning_rate: 0.01}\n")
    assert cli.main(["run", path, "--resume", str(tmp_path / "none"), "--no-progress"]) == 1
    assert "add e.g. 'checkpoint_every: 100'" in capsys.readouterr().err
    run_dir = str(tmp_path / "r")
    assert cli.main(["run", path, "--out", run_dir, "--no-progress",
                     "--set", "experiment.steps=10"]) == 0
    # another lr: taken, logged and recorded; another flavor: refused (the state differs)
    assert cli.main(["run", path, "--resume", run_dir, "--no-progress",
                     "--set", "optimizer.learning_rate=0.02"]) == 0
    assert "resumed at step 10 with changed settings (experiment.steps: 10 -> 20; " \
           "optimizer.learning_rate: 0.01 -> 0.02)" in capsys.readouterr().out
    recorded = json.loads((tmp_path / "r" / "resumed.json").read_text())
    assert recorded == [{"at_step": 10, "changes": {"experiment.steps": [10, 20],
                                                   "optimizer.learning_rate": [0.01, 0.02]}}]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["optimizer"][
        "learning_rate"] == 0.02
    assert cli.main(["run", path, "--resume", run_dir, "--no-progress", "--set",
                     "optimizer.flavor=torch"]) == 1
    assert "flavor 'paddle', the optimizer's is 'torch'" in capsys.readouterr().err


def test_cli_help_and_version(capsys):
    assert cli.main(["--version"]) == 0
    import adamax_engine
    assert capsys.readouterr().out.strip() == f"adamax-engine {adamax_engine.__version__}"
    for args in (["--help"], ["run", "--help"], ["bench", "--help"]):
        assert cli.main(args) == 0
        text = capsys.readouterr().out
        assert "``" not in text  # no reST markup in the help
        if args == ["--help"]:
            assert "--debug" in text
    cli.main(["bench", "--help"])
    assert "transformer and 2000-small-tensor workloads always" in capsys.readouterr().out.replace(
        "\n", " ").replace("  ", " ")


def test_a_pickled_file_is_refused_without_numpy_advice(tmp_path):
    import numpy as np

    from adamax_engine.io.checkpoint import CheckpointError, read
    path = tmp_path / "p.npz"
    np.savez(path, a=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match="holds pickled Python objects") as info:
        read(path)
    assert "allow_pickle" not in str(info.value)
