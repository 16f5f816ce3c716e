"""Every fenced python, sh and yaml block of README.md and docs/*.md runs as written.

Each block runs in a fresh process, in a scratch folder that links ``configs/`` and ``scripts/``
of this checkout, with this environment's ``bin/`` first on PATH (the docs say: the venv is
active) and numba's CUDA simulator on (no GPU in CI). python blocks run as scripts; sh blocks
line by line through bash; yaml blocks that are whole configs go through ``adamax-engine
validate``. A block needing a framework that is not installed skips. An HTML comment on the line
before a block changes how it runs: ``<!-- doc-test: mpiexec -n 2 -->`` runs a python block
under MPI; ``<!-- doc-test: skip: <why> -->`` skips it, the why shown (used for the test
suite's own command, the full benchmarks, and their scaled-down forms, which
tests/test_bench_smoke.py runs and checks).
"""
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FILES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[a-z]*)[ \t]*$")
DIRECTIVE = re.compile(r"^\s*<!-- doc-test: (?P<what>.*?) -->\s*$")
FRAMEWORKS = ("torch", "paddle", "jax", "optax", "cupy", "mpi4py", "matplotlib")
ONE_BLOCK_S = 600


def blocks(path):
    """(line, lang, code, directive) for every fenced block of a markdown file."""
    out, lines = [], open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m["lang"]:
            if m:  # a fence without a language (a diagram): skip to its end
                i += 1
                while i < len(lines) and not FENCE.match(lines[i]):
                    i += 1
            i += 1
            continue
        start, indent = i, len(m["indent"])
        body = []
        i += 1
        while not FENCE.match(lines[i]):
            body.append(lines[i][indent:])
            i += 1
        prev = DIRECTIVE.match(lines[start - 1]) if start and lines[start - 1] else \
            DIRECTIVE.match(lines[start - 2]) if start > 1 else None
        out.append((start + 1, m["lang"], "\n".join(body) + "\n", prev["what"] if prev else None))
        i += 1
    return out


ALL = [(os.path.relpath(f, ROOT), *b) for f in FILES for b in blocks(f)]
#: the README's two commands: the first is run by its own test below, the second is this test
#: suite (what .ci/run runs), so the generic test leaves that block to them
README_COMMANDS = ALL[0]
CASES = ALL[1:]


def test_the_docs_have_runnable_blocks():
    assert README_COMMANDS[:3] == ("README.md", README_COMMANDS[1], "sh")
    langs = {lang for _, _, lang, _, _ in CASES}
    assert {"python", "sh", "yaml"} <= langs
    skipped = [(f, line, d) for f, line, _, _, d in CASES if d and d.startswith("skip")]
    assert len(skipped) <= 3, skipped  # skipping is the exception, each with its reason
    assert all(len(d) > len("skip: ") + 10 for _, _, d in skipped)


@pytest.fixture
def scratch(tmp_path):
    for name in ("configs", "scripts"):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=ROOT,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return tmp_path, env


def _needs(code):
    missing = [m for m in FRAMEWORKS if re.search(rf"^\s*(import|from) {m}\b", code, re.M)
               and importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def _run(cmd, cwd, env, shell=False):
    out = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, capture_output=True, text=True,
                         timeout=ONE_BLOCK_S, executable="/bin/bash" if shell else None)
    assert out.returncode == 0, f"{cmd}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n" \
                                f"{out.stderr[-3000:]}"
    return out


def _commands(code):
    """Lines of a sh block, continuations joined, comments dropped."""
    joined = code.replace("\\\n", " ")
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and
            not ln.strip().startswith("#")]


@pytest.mark.parametrize("where,line,lang,code,directive",
                         CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_block_runs_as_written(scratch, where, line, lang, code, directive):
    cwd, env = scratch
    if directive and directive.startswith("skip"):
        pytest.skip(directive)
    if lang == "python":
        _needs(code)
        script = cwd / "snippet.py"
        script.write_text(code)
        cmd = [sys.executable, str(script)]
        if directive and directive.startswith("mpiexec"):
            mpiexec = shutil.which("mpiexec", path=env["PATH"])
            if mpiexec is None or importlib.util.find_spec("mpi4py") is None:
                pytest.skip("needs mpi4py and mpiexec")
            env = dict(env, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                       OMPI_MCA_rmaps_base_oversubscribe="1")
            cmd = [mpiexec, *directive.split()[1:], "--oversubscribe", *cmd]
        _run(cmd, cwd, env)
    elif lang == "sh":
        for command in _commands(code):
            _needs(command)
            _run(command, cwd, env, shell=True)
    elif lang == "yaml":
        data = yaml.safe_load(code)
        assert isinstance(data, dict) and data
        (cwd / "block.yaml").write_text(code)
        _run("adamax-engine validate block.yaml", cwd, env, shell=True)
    else:
        pytest.fail(f"{where}:{line}: a ```{lang} block: the docs test runs python, sh and yaml")


def test_readme_first_command_leaves_a_complete_run_folder(scratch):
    """The README's first command, as written, from a folder like a fresh clone's."""
    cwd, env = scratch
    first = _commands(README_COMMANDS[3])
    assert first[0].startswith("python3 scripts/bootstrap.py adamax-engine run configs/default")
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()[-1]
    assert first[1].split("#")[0].split() == ci.split()[1:]  # CI runs the second command
    out = _run(first[0], cwd, env, shell=True)
    run = cwd / "runs" / "default"
    files = {p.name for p in run.iterdir()}
    assert {"metrics.csv", "summary.json", "config.json", "checkpoint"} <= files
    if importlib.util.find_spec("matplotlib") is not None:  # the bootstrap installs it
        assert (run / "curves.png").stat().st_size > 10_000
    assert (run / "checkpoint" / "checkpoint.npz").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    assert f"loss {summary['first_loss']:.6g} -> {summary['final_loss']:.6g} in 300 steps" \
        in out.stdout and "outputs in runs/default" in out.stdout
