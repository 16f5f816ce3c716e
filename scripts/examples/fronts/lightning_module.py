"""A LightningModule whose configure_optimizers returns adamax_engine.torch.Adamax with a
StepLR scheduler stepped every step by Lightning.

    python scripts/examples/fronts/lightning_module.py
"""
import pytorch_lightning as pl
import torch

from adamax_engine.torch import Adamax


class Regressor(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(),
                                       torch.nn.Linear(32, 1))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss, prog_bar=False)
        return loss

    def configure_optimizers(self):
        opt = Adamax(self.parameters(), lr=0.02)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


if __name__ == "__main__":
    torch.manual_seed(0)
    x = torch.randn(512, 6)
    y = (x @ torch.randn(6, 1)).tanh()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    module = Regressor()
    first = torch.nn.functional.mse_loss(module.net(x), y).item()
    trainer = pl.Trainer(max_steps=200, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, loader)
    last = torch.nn.functional.mse_loss(module.net(x), y).item()
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    print(f"loss {first:.4f} -> {last:.4f}; lr now {lr:.4g} (StepLR, stepped by Lightning)")
    assert last < 0.3 * first and abs(lr - 0.02 * 0.5 ** 4) < 1e-12
    print("OK: Lightning trains with adamax_engine.torch.Adamax")
