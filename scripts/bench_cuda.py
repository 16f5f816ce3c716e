#!/usr/bin/env python3
"""GPU benchmark: see adamax_engine/bench/cuda.py (also `adamax-engine bench --device cuda`)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from adamax_engine.bench import cuda  # noqa: E402

if __name__ == "__main__":
    sys.exit(cuda.main())
