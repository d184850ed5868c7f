"""SK Mixup in a Lightning ``LightningModule``: a small MLP on scikit-learn's 8x8 digits.

    pip install lightning
    python examples/lightning_module.py --epochs 20

The mixing happens in ``training_step``, on the device, after Lightning has moved the
batch there; validation sees clean batches. Everything else is plain Lightning.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor
from torch.utils.data import DataLoader

import kmixup

try:
    import lightning as L
except ImportError:  # the older package name
    import pytorch_lightning as L

from plain_loop import NUM_CLASSES, digits_split, expected_calibration_error, make_model


class SKMixupClassifier(L.LightningModule):
    """A classifier trained on SK-Mixup batches; logs validation accuracy and ECE."""

    def __init__(self, num_features: int, lr: float = 3e-3, tau_std: float = 0.25) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = make_model(num_features)
        self.mixer = kmixup.KernelMixup(num_classes=NUM_CLASSES, tau_std=tau_std)
        self.val_probs: list[Tensor] = []
        self.val_labels: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        x_mix, y_mix = self.mixer(x, y)  # soft targets [B, NUM_CLASSES]
        loss = torch.sum(-y_mix * torch.log_softmax(self(x_mix), dim=-1), dim=-1).mean()
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_probs.append(torch.softmax(self(x), dim=-1).cpu())
        self.val_labels.append(y.cpu())

    def on_validation_epoch_end(self) -> None:
        probs, labels = torch.cat(self.val_probs), torch.cat(self.val_labels)
        self.val_probs.clear()
        self.val_labels.clear()
        self.log("val_acc", (probs.argmax(-1) == labels).float().mean(), prog_bar=True)
        self.log("val_ece", expected_calibration_error(probs, labels), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Fit and validate; returns the final ``{"val_acc", "val_ece", "train_loss"}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    L.seed_everything(args.seed, verbose=False)
    train_set, test_set = digits_split(args.seed)
    module = SKMixupClassifier(num_features=train_set.tensors[0].shape[1])
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(
        module,
        DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True),
        DataLoader(test_set, batch_size=256),
    )
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    print(", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    return metrics


if __name__ == "__main__":
    main()
