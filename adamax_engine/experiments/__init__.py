"""Experiments: built-in problems, the experiment spec, the training loop and sweeps."""
