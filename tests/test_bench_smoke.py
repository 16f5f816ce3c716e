"""The benchmark commands run end to end at tiny sizes, as docs/performance.md's first block
writes them (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_bench_cpu_tiny_runs():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_cpu.py"), "--tiny",
                          "--reps", "3"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "engine flat (adopt)" in out.stdout and "of ceiling" in out.stdout
    assert "floor here" in out.stdout and "the memory ceiling itself" in out.stdout
    assert "import + first step" in out.stdout
    assert "int8 state:" in out.stdout and "low-bit state, in its own loop" in out.stdout
    try:
        import jax, optax  # noqa: F401, E401
    except ImportError:
        return
    # both optax comparisons: the optimizer alone, and a training step with jax.grad's grads
    assert out.stdout.count("optax front under jit:") == 2
    assert out.stdout.count("training step with grads from jax.grad") == 2


def test_bench_cpu_parts_runs_only_the_named_loops():
    """``--parts lowbit``: the low-bit loop alone (the device check's 16-core CPU run); an
    unknown part is one usage error naming the flag."""
    script = os.path.join(ROOT, "scripts", "bench_cpu.py")
    out = subprocess.run([sys.executable, script, "--tiny", "--reps", "2", "--parts", "lowbit"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("int8 state:") == 2  # both workloads
    assert "flat/ceiling" not in out.stdout and "with the frameworks" not in out.stdout
    bad = subprocess.run([sys.executable, script, "--tiny", "--parts", "lowbit,gpu"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--parts: expected names from engine,lowbit,peers,jax" in bad.stderr


def test_bench_command_tiny_as_documented(tmp_path):
    """``adamax-engine bench --tiny --reps 3 --out bench_tiny``, with whatever peers are
    installed: the table, bench.json and the plot are written."""
    out = subprocess.run([sys.executable, "-m", "adamax_engine.cli", "bench", "--tiny", "--reps",
                          "3", "--out", "bench_tiny"], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| workload | threads | ceiling | engine |" in out.stdout
    report = json.loads((tmp_path / "bench_tiny" / "bench.json").read_text())
    assert report["results"] and all(r["impls"]["engine"]["status"] == "ok"
                                     for r in report["results"])
    assert any(p.suffix == ".png" for p in (tmp_path / "bench_tiny").iterdir())


def test_bench_cuda_tiny_runs_in_the_simulator(tmp_path):
    """Every launch of ``bench --device cuda`` (the engine, its bare update launch, clip+L2, the
    copy ceiling, the host-time loop) runs end to end in the CUDA simulator."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-m", "adamax_engine.cli", "bench", "--device", "cuda",
                          "--tiny", "--reps", "2"], capture_output=True, text=True, timeout=600,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "numba CUDA simulator" in out.stdout
    for line in ("engine (adopt, fused)", "its update launch alone", "device-to-device copy",
                 "engine global-norm clip + L2", "host time per step", "engine, bfloat16 state",
                 "engine, int8 state"):
        assert line in out.stdout, line
    assert out.stdout.count("ms (±") >= 8  # every engine row timed, in both workloads


def test_bench_cuda_goes_on_past_a_model_that_does_not_fit(monkeypatch, capsys):
    """A model too large for the card (1B params beside the peers' copies) is reported as
    skipped and the next workloads still run; any other error still stops the run."""
    from adamax_engine.bench import cuda as bench
    ran, real = [], bench.workload

    def first_does_not_fit(title, *args):
        if not ran:
            ran.append(title)
            raise MemoryError("CUDA_ERROR_OUT_OF_MEMORY: out of memory")
        ran.append(title)
        return real(title, *args)
    monkeypatch.setattr(bench, "workload", first_does_not_fit)
    monkeypatch.setattr(bench, "host_time_per_step", lambda torch, counts, reps: [])
    assert bench.main(["--tiny", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "skipped: out of device memory (MemoryError" in out
    assert len(ran) == 2 and "small tensors" in ran[1] and "engine, int8 state" in out

    def broken(*args):
        raise RuntimeError("a real bug")
    monkeypatch.setattr(bench, "workload", broken)
    with pytest.raises(RuntimeError, match="a real bug"):
        bench.main(["--tiny", "--reps", "1"])
