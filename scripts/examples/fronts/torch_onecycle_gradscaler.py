"""A torch training loop with OneCycleLR (lr and beta1 cycled), torch.amp.GradScaler and
clip_grad_norm_, run with adamax_engine.torch.Adamax and with torch.optim.Adamax: same numbers.

    python scripts/examples/fronts/torch_onecycle_gradscaler.py
"""
import torch

from adamax_engine.torch import Adamax


def train(optimizer_class):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = optimizer_class(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=60)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 10, generator=g)
    y = x[:, :1] * 2 - x[:, 1:2]
    for step in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        scaler.scale(loss * (float("inf") if step == 30 else 1.0)).backward()  # one overflow
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)  # skipped at step 30: no update, no step counted
        scaler.update()
        sched.step()
    return model, loss.item()


if __name__ == "__main__":
    ours, loss = train(Adamax)
    theirs, their_loss = train(torch.optim.Adamax)
    diff = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), theirs.parameters()))
    print(f"final loss {loss:.6f} (torch.optim.Adamax: {their_loss:.6f}); max param diff {diff:.2e}")
    assert diff < 1e-5, diff
    print("OK: adamax_engine.torch.Adamax trains like torch.optim.Adamax")
