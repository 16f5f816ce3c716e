#!/usr/bin/env bash
# The device check in one call (run on a machine with a CUDA GPU, from the repo root):
# the CUDA tests at real sizes (plain, mixed precision, row-sparse, streams, low-bit state), the
# parity table's low-bit CUDA rows, then the CUDA benchmark. Logs go to $OUT (or ./gpu_out).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/scripts/gpu_shim${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import numba, numpy, torch; print('numba', numba.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
"$PY" -c "import numba_cuda; print('numba-cuda', numba_cuda.__version__)" 2>/dev/null || true
timeout 300 "$PY" -m pytest -q -n 0 -p no:cacheprovider tests/test_cuda.py tests/test_cuda_mixed.py tests/test_cuda_sparse.py tests/test_cuda_streams.py tests/test_cuda_frameworks.py tests/test_cuda_lowbit.py "$@" 2>&1 | tee "$OUT/pytest_cuda.log" | tail -25
# the core parity table's low-bit CUDA rows (its float32-state CUDA rows are left out, for time)
timeout 150 "$PY" -m pytest -q -n 0 -p no:cacheprovider tests/test_parity.py -k "cuda and (bfloat16 or int8)" 2>&1 | tee "$OUT/pytest_parity_lowbit.log" | tail -8
timeout 280 "$PY" scripts/bench_cuda.py --reps 20 2>&1 | tee "$OUT/bench_cuda.log"
