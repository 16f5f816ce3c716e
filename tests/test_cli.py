"""The README's first command: ``adamax-engine run configs/default.yaml``, plus its error exits."""
import os

from adamax_engine import cli

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_default_config_trains_and_loss_falls():
    cfg = cli.load_config(os.path.join(ROOT, "configs", "default.yaml"))
    cfg["experiment"]["steps"] = 60
    losses = cli.run(cfg, log=lambda *_: None)
    assert len(losses) == 60
    assert losses[-1] < 0.5 * losses[0]


def test_main_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("experiment: {steps: 5}\noptimizer: {learning_rate: 0.01}\n")
    assert cli.main(["run", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer: {learnig_rate: 0.01}\n")
    assert cli.main(["run", str(bad)]) == 2
    assert "optimizer.learnig_rate: unknown key" in capsys.readouterr().err
    worse = tmp_path / "worse.yaml"
    worse.write_text("optimizer: {beta1: 1.5}\n")
    assert cli.main(["run", str(worse)]) == 2
    assert "Invalid value of beta1" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "missing.yaml")]) == 2
