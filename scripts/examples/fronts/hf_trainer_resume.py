"""The Hugging Face Trainer with adamax_engine.torch.Adamax (the Trainer makes its own linear
schedule with warmup), saving at step 6, then resume_from_checkpoint: the resumed run ends
where an uninterrupted one does (to the last bits). A tiny BERT built from a config: nothing downloaded.

    python scripts/examples/fronts/hf_trainer_resume.py
"""
import tempfile

import torch
import transformers

from adamax_engine.torch import Adamax


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=48):
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(1, 50, (n, 8), generator=g)
        self.labels = (self.ids[:, 0] > 25).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def train(out, resume=None, save_steps=None):
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=out, max_steps=12, per_device_train_batch_size=8, learning_rate=5e-3,
        lr_scheduler_type="linear", warmup_steps=3, report_to=[], use_cpu=True, seed=0,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 1000,
        disable_tqdm=True, logging_steps=4)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(),
                                   optimizers=(Adamax(model.parameters(), lr=5e-3), None))
    trainer.train(resume_from_checkpoint=resume)
    return model


if __name__ == "__main__":
    transformers.logging.set_verbosity_error()
    straight = train(tempfile.mkdtemp())
    folder = tempfile.mkdtemp()
    train(folder, save_steps=6)
    resumed = train(folder, resume=f"{folder}/checkpoint-6")
    diff = max((a - b).abs().max().item()
               for a, b in zip(straight.parameters(), resumed.parameters()))
    # (two uninterrupted runs in one process can already differ in the last bits, depending on
    # torch's thread count; a resume that lost the optimizer state is off by ~1e-3)
    print(f"resumed from {folder}/checkpoint-6; max difference from the uninterrupted run: "
          f"{diff:.1e}")
    assert diff < 1e-5, diff
    print("OK: the HF Trainer trains and resumes with adamax_engine.torch.Adamax")
