"""Every example under scripts/examples (paddle's documentation examples for Adamax, step,
minimize, clear_grad, set_lr, get_lr with StepDecay, state_dict) gives paddle's numbers with
adamax_engine.Adamax put in place of paddle.optimizer.Adamax, on paddle tensors."""
import glob
import importlib
import os
import subprocess
import sys

import pytest

pytest.importorskip("paddle")
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "examples")
EXAMPLES = sorted(os.path.basename(f)[:-3] for f in glob.glob(os.path.join(HERE, "[!_]*.py")))
sys.path.insert(0, HERE)


def test_there_are_examples():
    assert {"adamax_docstring", "step_clear_grad", "minimize", "set_lr", "get_lr",
            "state_dict"} <= set(EXAMPLES)


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor")
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_gives_paddles_numbers(name):
    compare = importlib.import_module("_compare")
    results = compare.both(importlib.import_module(name).example)
    compare.assert_same(results)
    assert results["engine"]  # something was compared


def test_get_lr_follows_real_paddle_not_the_seed_doc():
    compare = importlib.import_module("_compare")
    lines = compare.both(importlib.import_module("get_lr").example)["engine"]
    assert lines[10:14] == ["Learning rate of step0: 0.5", "Learning rate of step1: 0.5",
                            "Learning rate of step2: 0.05", "Learning rate of step3: 0.05"]


def test_an_example_runs_as_a_script():
    out = subprocess.run([sys.executable, os.path.join(HERE, "minimize.py")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "OK: adamax_engine.Adamax gives paddle.optimizer.Adamax's numbers" in out.stdout
