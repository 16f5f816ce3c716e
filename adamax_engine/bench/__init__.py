"""Benchmarks: ``adamax-engine bench`` (run.py), the implementations it compares (peers.py) and
how it times them (timing.py). scripts/bench_cpu.py and scripts/bench_cuda.py share this code."""
