"""Start-up cost: import + first step in a fresh process, the way a trainer starts.

"Warm" means every cache a second start finds: numba's JIT cache and Python's bytecode cache
(``PYTHONDONTWRITEBYTECODE`` is dropped for the child, as a normal install would have it).
Each figure is the median of several fresh processes, with the share of ``import numba,
numpy`` alone, which is numba's and numpy's cost rather than the engine's.

numba imports ``scipy`` when it is installed (its BLAS probe, ``scipy.linalg`` at the first
compiled call): ~0.45 s that an install of only adamax-engine's dependencies (numba, numpy,
pyyaml) does not pay. ``without_scipy`` measures that install by hiding scipy from the child's
importer, so both figures come from the same machine and run.
"""
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r"""
import sys, time
t0 = time.perf_counter()
hidden = {hidden!r}
if hidden:
    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in hidden:
                raise ImportError(name + " is hidden by the start-up benchmark")
    sys.meta_path.insert(0, Hide())
import numba, numpy as np
t1 = time.perf_counter()
import adamax_engine as ae
p = ae.Parameter(np.ones(1000, np.float32))
o = ae.Adamax(0.1, parameters=[p])
p.grad = np.ones(1000, np.float32)
o.step()
print(t1 - t0, time.perf_counter() - t0)
"""


def _env(**extra):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPATH": root, **extra}


def _once(env, hidden=()):
    """(seconds to import numba + numpy, seconds to the end of the first step)."""
    out = subprocess.run([sys.executable, "-c", _CHILD.format(hidden=tuple(hidden))], env=env,
                         check=True, capture_output=True, text=True)
    deps, total = out.stdout.split()[-2:]
    return float(deps), float(total)


def _warm(env, repeats, hidden=()):
    _once(env, hidden)  # fills the JIT and bytecode caches
    runs = [_once(env, hidden) for _ in range(repeats)]
    totals = [t for _, t in runs]
    return {"median_s": statistics.median(totals), "min_s": min(totals), "max_s": max(totals),
            "dependencies_import_s": statistics.median(d for d, _ in runs)}


def cold_start(warm_only=False, repeats=5):
    """Seconds for import + first step in fresh processes: warm caches (and, unless
    ``warm_only``, an empty JIT cache once)."""
    env = _env()
    result = {}
    if not warm_only:
        with tempfile.TemporaryDirectory() as empty:
            result["empty_cache_s"] = _once(_env(NUMBA_CACHE_DIR=empty))[1]
    warm = _warm(env, repeats)
    result["warm_cache_s"] = warm["median_s"]
    result["warm"] = warm
    if importlib.util.find_spec("scipy") is not None:
        result["without_scipy"] = _warm(env, repeats, hidden=("scipy",))
    return result


def describe(cs):
    """The start-up lines of a benchmark report."""
    w = cs["warm"]
    lines = [f"import + first step, warm caches, fresh process: {w['median_s']:.2f} s median of "
             f"runs ({w['min_s']:.2f}-{w['max_s']:.2f}; import numba + numpy alone "
             f"{w['dependencies_import_s']:.2f} s) (target < 1 s)"]
    if "without_scipy" in cs:
        s = cs["without_scipy"]
        lines.append(f"  the same with scipy hidden, as an install of only numba, numpy, pyyaml: "
                     f"{s['median_s']:.2f} s ({s['min_s']:.2f}-{s['max_s']:.2f}; numba + numpy "
                     f"{s['dependencies_import_s']:.2f} s): numba imports scipy when it is there")
    if "empty_cache_s" in cs:
        lines.append(f"  with an empty JIT cache (compiles): {cs['empty_cache_s']:.2f} s")
    return "\n".join(lines)
