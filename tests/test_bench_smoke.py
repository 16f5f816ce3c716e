"""The benchmark script runs end to end at tiny sizes (no timing is asserted)."""
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_bench_cpu_tiny_runs():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "bench_cpu.py"), "--tiny",
                          "--reps", "3"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "engine flat (adopt)" in out.stdout and "of ceiling" in out.stdout
    assert "floor here" in out.stdout and "the memory ceiling itself" in out.stdout
    assert "import + first step" in out.stdout
