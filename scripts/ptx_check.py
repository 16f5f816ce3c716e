#!/usr/bin/env python3
"""Compile every CUDA kernel for a real GPU, without one: NVVM to PTX, then ptxas to SASS.

  python3 scripts/bootstrap.py python scripts/ptx_check.py [--cc 9.0] [--out ptx_out]

The simulator runs the kernels as Python, so it never meets NVVM or ptxas. This script does:
1. record: in a child process under NUMBA_ENABLE_CUDASIM=1, tiny optimizer runs that reach
   every kernel (fp32, fp64, fp16 mixed precision, norm clips, skip_nonfinite, row-sparse
   grads, clear_grad, bfloat16 and int8 state, on float32 masters too) log each launch's
   kernel and argument types (borrow mode's address-table kernels, which the simulator cannot
   run, take the plain kernels' signatures, adapted);
2. compile: in a child process with the real numba.cuda (no GPU needed, only the CUDA
   toolkit's libNVVM), each recorded (kernel, signature) goes through ``cuda.compile_ptx`` for
   compute capability ``--cc``, then through ``ptxas -v``, which reports registers, spills and
   shared memory per kernel.
Exit status: 0 when all compile, 1 when one fails, 3 when no libNVVM / ptxas is installed.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
UNAVAILABLE = 3


FACTORIES = {"cuda": ("adamax_engine.kernels.cuda.dense", True),
             "cuda_sparse": ("adamax_engine.kernels.cuda.rows", True),
             "cuda_mixed": ("adamax_engine.kernels.cuda.mixed", False),
             "cuda_borrow": ("adamax_engine.kernels.cuda.borrow", True),
             "cuda_lowbit": ("adamax_engine.kernels.cuda.lowbit", True)}
ADDRESSES = ["array", "int64", 1, "C"]


def borrowed(records):
    """cuda_borrow's kernels never run in the simulator (it stages instead): their signatures
    are the plain ones with params/grads as address tables and the offsets as ``where``."""
    out = []
    for (name, dt, attr), sig in records:
        # update, bf16_update, int8_update: params and grads; sumsq_partials: grads
        tables = 1 if attr == "sumsq_partials" else 2
        if name == "cuda_lowbit" or (name == "cuda" and attr in ("update", "sumsq_partials")):
            out.append([["cuda_borrow", dt, attr],
                        [ADDRESSES] * tables + sig[tables:-1] + [ADDRESSES]])
    return out


def factory(name, dtype):
    """The kernel namespace that factory ``name`` builds for ``dtype`` (None: no dtype)."""
    import importlib

    import numpy as np
    module, by_dtype = FACTORIES[name]
    build = importlib.import_module(module).kernels
    return build(np.dtype(dtype)) if by_dtype else build()


def _spec(value):
    """A launch argument's numba type as JSON (arrays: dtype, ndim, layout)."""
    import numba
    import numpy as np
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):  # a NamedTuple record
        cls = type(value)
        return ["namedtuple", f"{cls.__module__}:{cls.__qualname__}", [_spec(v) for v in value]]
    if isinstance(value, tuple):
        return ["tuple", [_spec(v) for v in value]]
    ary = getattr(value, "_ary", value)  # the simulator's FakeCUDAArray wraps an ndarray
    if isinstance(ary, np.ndarray):
        ty = numba.typeof(ary)
        return ["array", str(ary.dtype), ty.ndim, ty.layout]
    return ["scalar", str(numba.typeof(value))]


def record():
    """Child 1 (simulator): run the scenarios, print the launches as JSON."""
    import numpy as np
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    import adamax_engine as ae
    from adamax_engine.kernels import cuda as K
    import importlib
    names = {}

    for name, (module, by_dtype) in FACTORIES.items():  # every kernel, by identity
        if name == "cuda_borrow":
            continue  # never launched in the simulator: see borrowed()
        ns = importlib.import_module(module).kernels(*([np.float32] if by_dtype else []))
        for attr, value in vars(ns).items():
            if isinstance(value, FakeCUDAKernel) and not value._device:
                names[id(value)] = (name, by_dtype, attr)
    seen = {}
    call = FakeCUDAKernel.__call__

    def logged(self, *args):
        if not self._device:
            sig = [_spec(a) for a in args]
            name, by_dtype, attr = names[id(self)]
            # the kernels are dtype-generic: a launch's dtype is its first float array's
            arrays = [s[1] for s in sig if s[0] == "array"]
            floats = [d for d in arrays if d.startswith("float")]
            dtype = (floats or arrays or [None])[0] if by_dtype else None
            seen[json.dumps([[name, dtype, attr], sig])] = True
        return call(self, *args)
    FakeCUDAKernel.__call__ = logged
    from numba import cuda
    rng = np.random.default_rng(0)
    for dt in ("float32", "float64", "float16"):
        ps = [ae.Parameter(cuda.to_device(rng.standard_normal(s).astype(dt))) for s in
              [(3, 5), (7,), (40,)]]
        groups = [{"params": ps[:2], "grad_clip": ae.ClipGradByGlobalNorm(1.0),
                   "weight_decay": ae.L2Decay(0.01)},
                  {"params": ps[2:], "grad_clip": ae.ClipGradByNorm(0.5),
                   "weight_decay": ae.L1Decay(0.01)}]
        opt = ae.Adamax(0.1, parameters=groups, device="cuda", skip_nonfinite=True,
                        multi_precision=dt == "float16")
        for _ in range(2):
            for p in ps:
                p.grad = cuda.to_device(rng.standard_normal(p.shape).astype(dt))
            opt.step()
        opt.clear_grad()
        if dt == "float16":
            continue
        emb = ae.Parameter(cuda.to_device(rng.standard_normal((9, 3)).astype(dt)))
        for lazy in (False, True):
            opt = ae.Adamax(0.1, parameters=[emb], device="cuda", lazy_mode=lazy,
                            grad_clip=ae.ClipGradByGlobalNorm(1.0), skip_nonfinite=True)
            for rows in ([0, 2, 2], [5, 1]):
                emb.grad = ae.RowSparseGrad(np.array(rows), rng.standard_normal(
                    (len(rows), 3)).astype(dt))
                opt.step()
            opt.catch_up(emb, np.array([5, 7]))
            opt.flush()
        K.divide(cuda.to_device(np.ones(5, dt)), 2.0)
    for state_dtype in ("bfloat16", "int8"):  # low-bit state: float32/float64 parameters
        for rounding, dt in (("stochastic", "float32"), ("nearest", "float32"),
                             ("stochastic", "float64")):
            ps = [ae.Parameter(cuda.to_device(rng.standard_normal(n).astype(dt)))
                  for n in (7, 300)]
            opt = ae.Adamax(0.1, parameters=ps, device="cuda", state_dtype=state_dtype,
                            state_rounding=rounding, grad_clip=ae.ClipGradByGlobalNorm(1.0))
            for p in ps:
                p.grad = cuda.to_device(rng.standard_normal(p.shape).astype(dt))
            opt.step()
        half = [ae.Parameter(cuda.to_device(rng.standard_normal(300).astype(np.float16)))]
        opt = ae.Adamax(0.1, parameters=half, device="cuda", state_dtype=state_dtype,
                        multi_precision=True)  # float32 masters: cuda_mixed's low-bit builds
        half[0].grad = cuda.to_device(rng.standard_normal(300).astype(np.float16))
        opt.step()
    print(json.dumps(sorted(json.loads(k) for k in seen)))


def compile_all(records, cc, out_dir):
    """Child 2 (real numba.cuda, no GPU): PTX for every record, then ptxas -v. Prints JSON."""
    import types as pytypes

    from numba import cuda
    from numba.cuda import dispatcher
    # device functions are compiled for "the current device": there is none, so say which
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    ptxas = shutil.which("ptxas") or next(
        (os.path.join(d, "bin", "ptxas") for d in _cuda_homes()
         if os.path.exists(os.path.join(d, "bin", "ptxas"))), None)
    results = []
    for (name, dt, attr), sig in records:
        argtys = [_type(s) for s in sig]
        fn = getattr(factory(name, dt), attr).py_func
        row = {"kernel": f"{name}.{attr}", "dtype": dt, "args": len(argtys)}
        try:
            ptx, _ = cuda.compile_ptx(fn, tuple(argtys), cc=cc)
        except Exception as exc:  # noqa: BLE001 - reported, then the exit status says it
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:400])
            results.append(row)
            continue
        row["ok"] = True
        path = os.path.join(out_dir, f"{name}.{attr}.{dt}.{len(results)}.ptx")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(ptx)
        if ptxas:
            sm = f"sm_{cc[0]}{cc[1]}"
            out = subprocess.run([ptxas, "-v", f"-arch={sm}", path, "-o", os.devnull],
                                 capture_output=True, text=True)
            row["ptxas_ok"] = out.returncode == 0
            text = out.stderr + out.stdout
            regs = re.search(r"Used (\d+) registers", text)
            spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
            smem = re.search(r"(\d+) bytes smem", text)
            row.update(registers=int(regs.group(1)) if regs else None,
                       spill_bytes=int(spill.group(1)) + int(spill.group(2)) if spill else None,
                       smem_bytes=int(smem.group(1)) if smem else 0)
            if out.returncode:
                row.update(ok=False, error=text[-400:])
        results.append(row)
    print(json.dumps({"ptxas": ptxas, "results": results}))


_SCALARS = {"bool": "boolean"}


def _type(spec):
    """_spec's JSON back to a numba type."""
    import numba
    import numpy as np
    from numba.core import types
    if spec[0] == "namedtuple":
        import importlib
        module, name = spec[1].split(":")
        cls = getattr(importlib.import_module(module), name)
        return types.NamedTuple([_type(s) for s in spec[2]], cls)
    if spec[0] == "tuple":
        return types.Tuple([_type(s) for s in spec[1]])
    if spec[0] == "array":
        return types.Array(numba.from_dtype(np.dtype(spec[1])), spec[2], spec[3])
    return getattr(types, _SCALARS.get(spec[1], spec[1]))


def _cuda_homes():
    homes = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    if os.path.isdir("/usr/local"):
        homes += sorted((os.path.join("/usr/local", d) for d in os.listdir("/usr/local")
                         if d.startswith("cuda-")), reverse=True)
    return [h for h in homes if h]


def nvvm_available():
    """libNVVM can be loaded (a CUDA toolkit is installed); no GPU is needed."""
    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def _child(mode, stdin=None, cc=None, out_dir=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NUMBA_ENABLE_CUDASIM="1" if mode == "record" else "0")
    args = [sys.executable, os.path.abspath(__file__), "--child", mode]
    if cc:
        args += ["--cc", f"{cc[0]}.{cc[1]}", "--out", out_dir]
    out = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="9.0", help="compute capability (default 9.0: H100/H200)")
    ap.add_argument("--out", default="ptx_out", help="folder for the .ptx files and report")
    ap.add_argument("--child", choices=["record", "compile", "probe"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cc = tuple(int(x) for x in args.cc.split("."))
    if args.child == "record":
        return record()
    if args.child == "probe":
        return print(json.dumps(nvvm_available()))
    if args.child == "compile":
        return compile_all(json.loads(sys.stdin.read()), cc, args.out)
    if not _child("probe"):
        print("no libNVVM here (install the CUDA toolkit or nvidia-cuda-nvcc): nothing compiled")
        return UNAVAILABLE
    os.makedirs(args.out, exist_ok=True)
    records = _child("record")
    records += borrowed(records)
    report = _child("compile", json.dumps(records), cc, args.out)
    with open(os.path.join(args.out, "ptx_report.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print(f"# CUDA kernels compiled for compute capability {args.cc} "
          f"(ptxas: {report['ptxas'] or 'not found'})")
    print("| kernel | dtype | args | ok | registers | spill bytes | smem bytes |")
    print("|---|---|---|---|---|---|---|")
    for r in report["results"]:
        print(f"| {r['kernel']} | {r['dtype'] or 'fp16/bf16'} | {r['args']} | "
              f"{'yes' if r['ok'] else 'NO'} | {r.get('registers', '-')} | "
              f"{r.get('spill_bytes', '-')} | {r.get('smem_bytes', '-')} |")
    failed = [r for r in report["results"] if not r["ok"]]
    for r in failed:
        print(f"\n{r['kernel']} ({r['dtype']}): {r['error']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
