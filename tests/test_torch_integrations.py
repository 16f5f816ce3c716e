"""adamax_engine.torch.Adamax where torch users put an optimizer: Lightning's
configure_optimizers (with a scheduler, and resume from a checkpoint), the HF Trainer (its own
scheduler, and resume_from_checkpoint), accelerate. Tiny models built from configs on the CPU;
nothing is downloaded."""
import os

import pytest

torch = pytest.importorskip("torch")
from adamax_engine.torch import Adamax  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-6)


def assert_same_params(m1, m2, **tol):
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, **(tol or TOL))


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    return x, (x @ torch.randn(6, 1, generator=g)).tanh()


# --- Lightning -------------------------------------------------------------------------------
def _lightning_module(make_opt):
    pl = pytest.importorskip("pytorch_lightning")

    class Regressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                           torch.nn.Linear(16, 1))

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            opt = make_opt(self.parameters())
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    return pl, Regressor()


def _fit(make_opt, root, steps, ckpt=None):
    pl, module = _lightning_module(make_opt)
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(root), enable_checkpointing=False)
    trainer.fit(module, loader, ckpt_path=ckpt)
    return trainer, module


def test_lightning_trains_like_torch_adamax_and_steps_the_scheduler(tmp_path):
    _, ours = _fit(lambda p: Adamax(p, lr=0.02), tmp_path / "a", 12)
    _, theirs = _fit(lambda p: torch.optim.Adamax(p, lr=0.02), tmp_path / "b", 12)
    assert_same_params(ours, theirs)
    opt = ours.trainer.optimizers[0]
    assert isinstance(opt, Adamax) and opt.param_groups[0]["lr"] == pytest.approx(0.02 * 0.7 ** 4)


def test_lightning_resume_from_checkpoint_restores_the_optimizer(tmp_path):
    """Resumed from a checkpoint written at step 8, ours ends where torch.optim.Adamax
    resumed the same way ends (Lightning's own resume is the reference, not a straight run)."""
    def resumed(make, name):
        trainer, _ = _fit(make, tmp_path / name, 8)
        ckpt = str(tmp_path / f"{name}.ckpt")
        trainer.save_checkpoint(ckpt)
        saved = torch.load(ckpt, weights_only=True)["optimizer_states"][0]
        assert int(saved["state"][0]["step"]) == 8
        return _fit(make, tmp_path / f"{name}-resumed", 12, ckpt=ckpt)[1]
    ours = resumed(lambda p: Adamax(p, lr=0.02), "ours")
    theirs = resumed(lambda p: torch.optim.Adamax(p, lr=0.02), "theirs")
    assert_same_params(ours, theirs)
    opt = ours.trainer.optimizers[0]
    assert [int(s["step"]) for s in opt.state.values()] == [12] * 4
    fresh = _fit(lambda p: Adamax(p, lr=0.02), tmp_path / "fresh", 4)[1]
    assert not torch.allclose(next(fresh.parameters()), next(ours.parameters()))


# --- Hugging Face Trainer --------------------------------------------------------------------
def _hf_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return transformers, transformers.BertForSequenceClassification(config)


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(1, 40, (n, 8), generator=g)
        self.labels = (self.ids[:, 0] > 20).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def _hf_train(make_opt, out, steps, resume=None, save_steps=None, drop_optimizer=False):
    transformers, model = _hf_model()
    if drop_optimizer:  # a copy of the checkpoint without optimizer.pt
        import shutil
        copy = out.parent / "no-optimizer"
        shutil.copytree(resume, copy / "checkpoint-4")
        (copy / "checkpoint-4" / "optimizer.pt").unlink()
        resume, out = str(copy / "checkpoint-4"), copy
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=8,
        learning_rate=0.01, lr_scheduler_type="linear", warmup_steps=2, logging_steps=1,
        save_steps=save_steps or 10 ** 6, save_strategy="steps" if save_steps else "no",
        report_to=[], use_cpu=True, seed=0, data_seed=0, disable_tqdm=True)
    opt = make_opt(model.parameters())
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens(),
                                   optimizers=(opt, None))  # the Trainer makes its scheduler
    trainer.train(resume_from_checkpoint=resume)
    return trainer, model


def test_hf_trainer_with_its_own_scheduler_trains_like_torch_adamax(tmp_path):
    trainer, ours = _hf_train(lambda p: Adamax(p, lr=0.01), tmp_path / "a", 8)
    _, theirs = _hf_train(lambda p: torch.optim.Adamax(p, lr=0.01), tmp_path / "b", 8)
    assert_same_params(ours, theirs)
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert logged[1] > logged[0] and logged[-1] < max(logged)  # warmup, then linear decay


def test_hf_trainer_resume_from_checkpoint(tmp_path):
    _, full = _hf_train(lambda p: Adamax(p, lr=0.01), tmp_path / "full", 8)
    _hf_train(lambda p: Adamax(p, lr=0.01), tmp_path / "run", 8, save_steps=4)
    ckpt = tmp_path / "run" / "checkpoint-4"
    assert (ckpt / "optimizer.pt").exists()
    state = torch.load(ckpt / "optimizer.pt", weights_only=True)  # torch's safe loader
    assert int(state["state"][0]["step"]) == 4
    _, resumed = _hf_train(lambda p: Adamax(p, lr=0.01), tmp_path / "run", 8, resume=str(ckpt))
    # (two uninterrupted runs can differ in the last bits already, with torch on one thread)
    assert_same_params(resumed, full, rtol=0, atol=1e-6)
    lost = _hf_train(lambda p: Adamax(p, lr=0.01), tmp_path / "lost", 8,
                     resume=str(ckpt), drop_optimizer=True)[1]
    with pytest.raises(AssertionError):  # without the optimizer's state it ends elsewhere
        assert_same_params(lost, full, rtol=0, atol=1e-6)


def test_accelerate_prepares_and_steps_it():
    accelerate = pytest.importorskip("accelerate")
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    acc = accelerate.Accelerator(cpu=True)
    opt = Adamax(model.parameters(), lr=0.05)
    model, wrapped = acc.prepare(model, opt)
    x, y = _data()
    losses = []
    for _ in range(20):
        wrapped.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        acc.backward(loss)
        wrapped.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert int(opt.state[next(model.parameters())]["step"]) == 20
