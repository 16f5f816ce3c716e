#!/usr/bin/env python3
"""Optimizer-state memory with low-bit state, by ``Adamax.state_nbytes`` and by the process's
resident set, on a model of ``--params`` float32 parameters (default 100M).

  python3 scripts/bootstrap.py python scripts/lowbit_memory.py [--params N]

Each state dtype runs in its own process: build the parameters and their grads, read the RSS,
build the optimizer and take one step (the state is touched, so it is resident), read it again.
The RSS delta also holds what every state dtype allocates alike (adopt mode's flat parameter
and grad buffers, numba's compiled code), so the state's share comes from the difference to the
float32-state run, whose state is 8 bytes per parameter: state RSS = 8 N - (delta_fp32 -
delta). Linux (/proc/self/statm).
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

STATE_DTYPES = ("float32", "bfloat16", "int8")


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(state_dtype, n, tensors=64):
    """(RSS delta over building the optimizer and one step, state_nbytes) in this process."""
    import numpy as np
    import adamax_engine as ae
    rng = np.random.default_rng(0)
    sizes = [n // tensors + (1 if i < n % tensors else 0) for i in range(tensors)]
    params = [ae.Parameter(rng.standard_normal(k, dtype=np.float32), name=f"w{i}")
              for i, k in enumerate(sizes)]
    grads = [rng.standard_normal(k, dtype=np.float32) for k in sizes]
    warm = ae.Parameter(np.ones(300, np.float32))  # compile the kernels outside the measurement
    tiny = ae.Adamax(1e-3, parameters=[warm], state_dtype=state_dtype)
    warm.grad = np.ones(300, np.float32)
    tiny.step()
    before = _rss()
    opt = ae.Adamax(1e-3, parameters=params, state_dtype=state_dtype)
    for p, g in zip(params, grads):
        p.grad = g
    del grads
    opt.step()
    return _rss() - before, opt.state_nbytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=100_000_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.params)))
        return 0
    n, rows = args.params, {}
    for sd in STATE_DTYPES:
        out = subprocess.run([sys.executable, __file__, "--params", str(n), "--child", sd],
                             check=True, capture_output=True, text=True).stdout
        rows[sd] = json.loads(out.strip().splitlines()[-1])
    base = rows["float32"][0]
    print(f"{n / 1e6:.0f}M float32 parameters; optimizer state per parameter:")
    for sd in STATE_DTYPES:
        delta, nbytes = rows[sd]
        from_rss = (8 * n - (base - delta)) / n
        print(f"  {sd:8s}: state_nbytes {nbytes / n:.3f} B; by RSS {from_rss:.3f} B "
              f"(RSS delta {delta / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
