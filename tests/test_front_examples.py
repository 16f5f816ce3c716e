"""Every script under scripts/examples/fronts runs and prints its OK line: a torch loop with
OneCycleLR + GradScaler, Lightning, the HF Trainer with resume, hapi save/load, optax.chain
under jit (each compares itself with the framework's own optimizer or an uninterrupted run)."""
import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts", "examples",
                    "fronts")
SCRIPTS = sorted(glob.glob(os.path.join(HERE, "*.py")))


def test_the_five_examples_are_there():
    assert {os.path.basename(s) for s in SCRIPTS} >= {
        "torch_onecycle_gradscaler.py", "lightning_module.py", "hf_trainer_resume.py",
        "paddle_hapi_save_load.py", "optax_chain_jit.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_example_runs(script, tmp_path):
    code = open(script, encoding="utf-8").read()
    for module in re.findall(r"^import (\w+)|^from (\w+)", code, re.M):
        name = module[0] or module[1]
        if name != "adamax_engine" and importlib.util.find_spec(name) is None:
            pytest.skip(f"needs {name}")
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK: " in out.stdout, out.stdout
