#!/usr/bin/env bash
# The device check in one call (run on a machine with a CUDA GPU, from the repo root), sized to
# one device call of at most 10 minutes (parts' time limits add up to 540 s), most needed first:
# the CUDA tests at real sizes (plain, mixed precision, row-sparse, streams, low-bit state), the
# CUDA benchmark at 10M and 100M (its low-bit ratios at >= 100M), the same with unsigned flat
# indices (ADAMAX_ENGINE_CUDA_INDEX=uint64: the A/B of kernels/cuda/runtime.py's Index), the
# parity table's low-bit CUDA rows, then the CPU low-bit loop on that machine's cores (more
# cores per memory channel than the 2-core VM). A part that runs out of time is cut and the
# next one runs. Logs go to $OUT (or ./gpu_out).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/scripts/gpu_shim${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
PY="${PYTHON:-python3}"
part() {  # part SECONDS LOG LINES CMD...: CMD under a time limit, its log kept, its tail shown
    local limit="$1" log="$OUT/$2" lines="$3"; shift 3
    echo "== $* (limit ${limit}s)"
    SECONDS=0
    timeout "$limit" "$@" 2>&1 | tee "$log" | tail -"$lines"
    echo "== exit ${PIPESTATUS[0]} after ${SECONDS}s (124: cut at its limit)"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import numba, numpy, torch; print('numba', numba.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
"$PY" -c "import numba_cuda; print('numba-cuda', numba_cuda.__version__)" 2>/dev/null || true
part 200 pytest_cuda.log 25 "$PY" -m pytest -q -n 0 -p no:cacheprovider tests/test_cuda.py \
    tests/test_cuda_mixed.py tests/test_cuda_sparse.py tests/test_cuda_streams.py \
    tests/test_cuda_frameworks.py tests/test_cuda_lowbit.py tests/test_cuda_index.py "$@"
part 150 bench_cuda.log 60 "$PY" scripts/bench_cuda.py --reps 20 --sizes 10e6,100e6
ADAMAX_ENGINE_CUDA_INDEX=uint64 part 70 bench_cuda_uint64.log 60 "$PY" scripts/bench_cuda.py \
    --reps 20 --sizes 10e6,100e6
# the core parity table's low-bit CUDA rows (its float32-state CUDA rows are left out, for time)
part 60 pytest_parity_lowbit.log 8 "$PY" -m pytest -q -n 0 -p no:cacheprovider \
    tests/test_parity.py -k "cuda and (bfloat16 or int8)"
part 60 bench_cpu_lowbit.log 30 "$PY" scripts/bench_cpu.py --reps 20 --parts lowbit
