"""The low-bit state measurement scripts run and report what they claim: scripts/lowbit_quality.py
(three state dtypes, one torch model, the three curves on one plot) and scripts/lowbit_memory.py
(state bytes per parameter by state_nbytes and by RSS, one process per state dtype)."""
import importlib.util
import os
import re

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality_script_trains_three_state_dtypes_and_plots(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    quality = _script("lowbit_quality")
    curves = {sd: quality.torch_run(sd, 30) for sd in quality.STATE_DTYPES}
    for sd, losses in curves.items():  # it learns, whatever the state dtype
        assert len(losses) == 30 and losses[-5:].mean() < losses[:5].mean()
    assert quality.main(["--steps", "30", "--skip-configs", "--streams", "2", "--out",
                         str(tmp_path)]) == 0
    out = capsys.readouterr().out
    finals = re.findall(r"state (\w+)\s*: final loss \(mean of the last 50 steps\) ([\d.]+)", out)
    assert [sd for sd, _ in finals] == list(quality.STATE_DTYPES)
    assert (tmp_path / "lowbit_quality.png").stat().st_size > 10_000
    import matplotlib.image
    assert matplotlib.image.imread(tmp_path / "lowbit_quality.png").shape[2] in (3, 4)
    for name in ("rosenbrock", "teacher_student", "quadratic"):
        assert re.search(name + r" over 2 rounding streams.*\n  bfloat16 mean .*within 2%: "
                         r"\d of 2\n  int8 +mean ", out)


def test_rounding_streams_differ_and_float32_has_one():
    quality = _script("lowbit_quality")
    bf16 = quality.rounding_streams("bfloat16", 3, steps=300)
    assert len(set(bf16.tolist())) == 3  # each offset rounds differently
    fp32 = [quality.rosenbrock_run("float32", offset, 300) for offset in (0, 256)]
    assert fp32[0] == fp32[1]  # float32 state has no rounding stream: the offset is idle
    assert abs(np.log(bf16 / fp32[0])).max() < 1.0  # the same valley, near the same point
    int8 = quality.rounding_streams("int8", 2, steps=100, run=quality.teacher_student_run)
    assert int8[0] != int8[1] and abs(np.log(int8 / quality.teacher_student_run("float32", 0,
                                                                              100))).max() < 0.5


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc (Linux)")
def test_memory_script_reports_state_bytes_per_parameter(capsys):
    memory = _script("lowbit_memory")
    assert memory.main(["--params", "4000000"]) == 0
    out = capsys.readouterr().out
    rows = dict((sd, (float(a), float(b))) for sd, a, b in re.findall(
        r"(\w+)\s*: state_nbytes ([\d.]+) B; by RSS (-?[\d.]+) B", out))
    assert set(rows) == set(memory.STATE_DTYPES)
    assert abs(rows["float32"][0] - 8) < 0.01 and rows["bfloat16"][0] <= 4.1 \
        and rows["int8"][0] <= 2.1
    # the RSS figures follow the same order (at this small size within ~0.5 B of the count)
    assert rows["int8"][1] < rows["bfloat16"][1] < 8.0
    assert abs(rows["bfloat16"][1] - 4.0) < 0.5 and abs(rows["int8"][1] - 2.03) < 0.5
