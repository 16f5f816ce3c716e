"""The optimizer's state out and in: paddle-layout ``state_dict`` and ``.npz`` checkpoints."""
