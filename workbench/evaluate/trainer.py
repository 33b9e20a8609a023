"""Train a genotype's network on a task's splits: seeded, device-agnostic, NaN-guarded."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.data.base import Splits
from workbench.errors import TrialFailed, UserError
from workbench.evaluate.base import EpochCallback, EvalResult
from workbench.nn.build import build_model
from workbench.space.genotype import Genotype


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings (a task's ``[training]`` table).

    Attributes:
        epochs: Passes over the training split.
        batch_size: Examples per step.
        lr: Peak learning rate of AdamW (cosine-annealed to zero).
        weight_decay: AdamW weight decay.
        grad_clip: Gradient-norm clip (exploding gradients).
        label_smoothing: Cross-entropy label smoothing.
        max_seconds: Wall-clock limit of one trial (None: no limit); past it the trial fails.
        device: ``cuda``, ``cpu`` or None (``cuda`` when available).
        finetune_epochs: Epochs of a child that starts from inherited weights (a network
            morphism of its parent, or weights from another task); None: a third of ``epochs``
            (at least 1). The learning rate is cosine-annealed over these epochs.
        finetune_lr: Peak learning rate of such a child (None: ``lr``).
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    label_smoothing: float = 0.0
    max_seconds: float | None = None
    device: str | None = None
    finetune_epochs: int | None = None
    finetune_lr: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a task's ``[training]`` table; unknown keys raise :class:`UserError`."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"unknown [training] settings {sorted(unknown)}; expected some of {sorted(names)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def finetune(self) -> TrainConfig:
        """The settings for a child with inherited weights: fewer epochs, its own peak lr."""
        epochs = self.finetune_epochs if self.finetune_epochs is not None else max(1, round(self.epochs / 3))
        if epochs < 1:
            raise UserError(f"[training] finetune_epochs must be at least 1, got {epochs}")
        return replace(self, epochs=int(epochs), lr=self.finetune_lr if self.finetune_lr is not None else self.lr)


def pick_device(requested: str | None = None) -> torch.device:
    """``cuda`` when available (or requested), else CPU."""
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("device 'cuda' requested but CUDA is not available")
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_params(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024, amp: bool = False) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on `n` examples."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[i : i + batch])
        correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    return correct / max(1, len(y))


@torch.no_grad()
def inference_latency(model: nn.Module, x: torch.Tensor, batch: int = 64, reps: int = 5, amp: bool = False) -> float:
    """Median seconds per example of a forward pass in eval mode on a batch of ``batch`` inputs."""
    model.eval()
    xb = x[:batch]
    times = []
    for i in range(reps + 1):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            model(xb)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        if i:  # the first call warms up
            times.append(time.perf_counter() - t0)
    return float(np.median(times)) / max(1, len(xb))


class TrainedEvaluator:
    """Evaluates genotypes by training them on a task's splits.

    Args:
        splits: The task's fixed train/validation/test arrays.
        config: Trainer settings; joint genotypes override lr, weight decay, batch size, epochs.
        objective: Metric maximised by the search (``val_accuracy``).
    """

    def __init__(self, splits: Splits, config: TrainConfig, objective: str = "val_accuracy") -> None:
        if objective not in ("val_accuracy", "neg_val_loss"):
            raise UserError(f"trained tasks support objective 'val_accuracy' or 'neg_val_loss', got {objective!r}")
        self.splits = splits
        self.config = config
        self.objective = objective
        self.device = pick_device(config.device)
        self._tensors: dict[str, torch.Tensor] | None = None

    def _data(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            s, dev = self.splits, self.device
            self._tensors = {
                "x_train": torch.from_numpy(s.x_train).to(dev),
                "y_train": torch.from_numpy(s.y_train).to(dev),
                "x_val": torch.from_numpy(s.x_val).to(dev),
                "y_val": torch.from_numpy(s.y_val).to(dev),
                "x_test": torch.from_numpy(s.x_test).to(dev),
                "y_test": torch.from_numpy(s.y_test).to(dev),
            }
        return self._tensors

    def config_for(self, genotype: Genotype) -> TrainConfig:
        """The trainer settings for ``genotype`` (joint spaces carry their own hyperparameters)."""
        if not genotype.space.startswith("joint-"):
            return self.config
        from workbench.space.registry import space_class

        hp = space_class(genotype.space).hyperparameters(genotype)
        keep = {k: v for k, v in hp.items() if k in {"lr", "weight_decay", "batch_size", "epochs"}}
        return replace(self.config, **keep)

    def build(self, genotype: Genotype, seed: int) -> nn.Module:
        """The freshly initialised network of ``genotype`` (init seeded, global RNG untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(genotype, self.splits.input_shape, self.splits.n_classes)

    def evaluate(
        self,
        genotype: Genotype,
        *,
        seed: int = 0,
        init_state: Mapping[str, Any] | None = None,
        on_epoch: EpochCallback | None = None,
        model: nn.Module | None = None,
    ) -> EvalResult:
        """Train and measure ``genotype``; raises :class:`TrialFailed` if training diverges."""
        cfg = self.config_for(genotype)
        notes: dict[str, str] = {}
        if model is None:
            model = self.build(genotype, seed)
            if init_state is not None:
                try:
                    model.load_state_dict(init_state)
                except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
                    notes["weights"] = f"inherited weights did not fit ({str(exc).splitlines()[0]}); trained from scratch"
                    model = self.build(genotype, seed)  # a failed load may have copied some tensors
                else:
                    cfg = cfg.finetune()
        return self.train(model, cfg, seed=seed, on_epoch=on_epoch, notes=notes)

    def train(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        *,
        seed: int = 0,
        on_epoch: EpochCallback | None = None,
        notes: dict[str, str] | None = None,
    ) -> EvalResult:
        """Train ``model`` (already initialised or inherited) and measure it."""
        data = self._data()
        dev = self.device
        cuda = dev.type == "cuda"
        model = model.to(dev)
        if cuda and len(self.splits.input_shape) == 3:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(data["y_train"]) / cfg.batch_size))
        total = max(1, cfg.epochs * steps_per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        curve: list[dict[str, float]] = []
        start = time.perf_counter()
        x_tr, y_tr = data["x_train"], data["y_train"]
        n = len(y_tr)
        with torch.random.fork_rng(devices=[dev.index or 0] if cuda else []):
            torch.manual_seed(seed)
            for epoch in range(cfg.epochs):
                model.train()
                perm = torch.randperm(n, generator=gen).to(dev)
                total_loss, seen = 0.0, 0
                for i in range(0, n, cfg.batch_size):
                    idx = perm[i : i + cfg.batch_size]
                    if len(idx) < 2:
                        continue  # batch norm needs two examples
                    xb, yb = x_tr[idx], y_tr[idx]
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                        loss = loss_fn(model(xb), yb)
                    if not torch.isfinite(loss.detach()):
                        raise TrialFailed(f"diverged: training loss is {float(loss.detach())} at epoch {epoch}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    gnorm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    if not torch.isfinite(gnorm):
                        raise TrialFailed(f"diverged: gradient norm is {float(gnorm)} at epoch {epoch}")
                    opt.step()
                    sched.step()
                    total_loss += float(loss.detach()) * len(idx)
                    seen += len(idx)
                val_acc = accuracy(model, data["x_val"], data["y_val"], amp=cuda)
                point = {"train_loss": total_loss / max(1, seen), "val_accuracy": val_acc}
                curve.append(point)
                if on_epoch is not None:
                    on_epoch(epoch, point)
                if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
                    raise TrialFailed(f"timed out: over {cfg.max_seconds:g} s at epoch {epoch}")
        seconds = time.perf_counter() - start
        final = curve[-1] if curve else {"val_accuracy": accuracy(model, data["x_val"], data["y_val"], amp=cuda)}
        metrics = {
            "val_accuracy": final["val_accuracy"],
            "test_accuracy": accuracy(model, data["x_test"], data["y_test"], amp=cuda),
            "train_seconds": seconds,
            "epochs": float(cfg.epochs),
            "params": float(count_params(model)),
            "latency": inference_latency(model, data["x_val"], amp=cuda),
        }
        if "train_loss" in final:
            metrics["train_loss"] = final["train_loss"]
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        return EvalResult(metrics=metrics, curve=curve, state_dict=state, notes=dict(notes or {}))


def evaluator_seed(search_seed: int, number: int) -> int:
    """The training seed of trial ``number`` of a search."""
    return int(np.random.SeedSequence([search_seed, number]).generate_state(1)[0])
