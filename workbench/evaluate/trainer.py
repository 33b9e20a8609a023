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
from workbench.evaluate.base import EpochCallback, EvalResult, StopTraining
from workbench.evaluate.fidelity import Fidelity
from workbench.evaluate.shrink_perturb import is_identity, shrink_perturb
from workbench.nn.build import build_model
from workbench.nn.memory import memory_shortfall
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
        finetune_shrink: Such a child's inherited conv and dense weights are multiplied by this
            before fine-tuning ...
        finetune_perturb: ... and this much of a fresh initialisation is added (shrink and
            perturb, Ash & Adams 2020: closes the gap between fine-tuned children and the same
            architecture trained from scratch; 1 and 0 keep the morphed function exactly).
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
    finetune_shrink: float = 0.3
    finetune_perturb: float = 0.1

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
        self._reduced: dict[tuple[float, float], dict[str, torch.Tensor]] = {}

    def _data(self, fidelity: Fidelity | None = None) -> dict[str, torch.Tensor]:
        """The splits as tensors on the device; at a fidelity, the training subset and the
        downsampled inputs (cached per data fraction and resolution)."""
        if fidelity is not None and (fidelity.data_fraction != 1.0 or fidelity.resolution != 1.0):
            key = (float(fidelity.data_fraction), float(fidelity.resolution))
            if key not in self._reduced:
                full = self._data()
                keep = torch.from_numpy(subset_indices(self.splits.y_train, key[0])).to(self.device)
                self._reduced[key] = {
                    "x_train": resize_inputs(full["x_train"][keep], key[1]),
                    "y_train": full["y_train"][keep],
                    "x_val": resize_inputs(full["x_val"], key[1]),
                    "y_val": full["y_val"],
                    "x_test": resize_inputs(full["x_test"], key[1]),
                    "y_test": full["y_test"],
                }
            return self._reduced[key]
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

    def input_shape_at(self, fidelity: Fidelity | None = None) -> tuple[int, ...]:
        """One example's shape at ``fidelity`` (downsampled by its resolution)."""
        shape = tuple(self.splits.input_shape)
        if fidelity is None or fidelity.resolution == 1.0:
            return shape
        return (shape[0], *(resized_length(n, fidelity.resolution) for n in shape[1:]))

    def build(self, genotype: Genotype, seed: int, fidelity: Fidelity | None = None) -> nn.Module:
        """The freshly initialised network of ``genotype`` (init seeded, global RNG untouched);
        at a ``fidelity``, for its input resolution and with its width multiplier.

        Raises:
            TrialFailed: Training it would need more memory than the device has available
                (:func:`workbench.nn.memory.memory_shortfall`); nothing is allocated.
        """
        width = 1.0 if fidelity is None else float(fidelity.width_mult)
        shape, batch = self.input_shape_at(fidelity), int(self.config_for(genotype).batch_size)
        short = memory_shortfall(genotype, shape, self.splits.n_classes, batch, self.device, width)
        if short:
            raise TrialFailed(short)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_model(genotype, shape, self.splits.n_classes, width_mult=width)

    def evaluate(
        self,
        genotype: Genotype,
        *,
        seed: int = 0,
        init_state: Mapping[str, Any] | None = None,
        on_epoch: EpochCallback | None = None,
        model: nn.Module | None = None,
        fidelity: Fidelity | None = None,
    ) -> EvalResult:
        """Train and measure ``genotype`` (at ``fidelity``, if given).

        At a fidelity the network is built at its width and input resolution, trained on its
        fraction of the training split, for its epochs; with inherited weights and
        ``fidelity.start_epoch > 0`` (a promotion continuing a lower rung) only the remaining
        ``epochs - start_epoch`` epochs are trained and the curve's epochs continue from
        ``start_epoch``. An ``on_epoch`` that raises :class:`StopTraining` ends training after
        that epoch (the result's ``stopped``).

        Out of memory (``torch.cuda.OutOfMemoryError``, or a CPU allocation failure): the trial
        is trained once more from the same start at half the batch size (noted as
        ``nasw.note.oom``); a second failure, or a batch size that cannot be halved, fails it.
        ``[training] max_seconds`` bounds both attempts together.

        Raises:
            TrialFailed: Training diverged, timed out, or ran out of memory twice.
        """
        cfg = self.config_for(genotype)
        notes: dict[str, str] = {}
        deadline = None if cfg.max_seconds is None else time.perf_counter() + float(cfg.max_seconds)
        given = model is not None
        first = 0
        if model is None:
            model, cfg = self._start(genotype, seed, init_state, cfg, notes, fidelity)
            first = self._first_epoch
        elif fidelity is not None:
            cfg = at_fidelity(cfg, fidelity, continuing=False)
        data = self._data(fidelity)
        try:
            return self.train(
                model, cfg, seed=seed, on_epoch=on_epoch, notes=notes, deadline=deadline, data=data, first_epoch=first
            )
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        del model
        free_device_memory(self.device)
        half = cfg.batch_size // 2
        if given or half < 2:
            why = "the model was given" if given else f"batch size {cfg.batch_size} cannot be halved"
            raise TrialFailed(f"out of memory at batch size {cfg.batch_size} ({why}): {first}")
        notes["oom"] = f"out of memory at batch size {cfg.batch_size} ({first}); retried at batch size {half}"
        retry_notes: dict[str, str] = {}
        model, cfg = self._start(genotype, seed, init_state, self.config_for(genotype), retry_notes, fidelity)
        notes.update(retry_notes)
        try:
            return self.train(
                model,
                replace(cfg, batch_size=half),
                seed=seed,
                on_epoch=on_epoch,
                notes=notes,
                deadline=deadline,
                eval_batch=512,
                data=data,
                first_epoch=self._first_epoch,
            )
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            del model
            free_device_memory(self.device)
            raise TrialFailed(f"out of memory at batch size {cfg.batch_size} and again at {half}") from None

    def _start(
        self,
        genotype: Genotype,
        seed: int,
        init_state: Mapping[str, Any] | None,
        cfg: TrainConfig,
        notes: dict[str, str],
        fidelity: Fidelity | None = None,
    ) -> tuple[nn.Module, TrainConfig]:
        """The network a trial starts from (inherited weights where they fit) and its settings.

        Sets ``self._first_epoch``: the epoch the curve continues from (a promotion that loaded
        its lower rung's weights), else 0.
        """
        self._first_epoch = 0
        model = self.build(genotype, seed, fidelity)
        loaded = False
        if init_state is not None:
            finetuning = fidelity is None or not fidelity.start_epoch  # else: a promotion continues its rung
            mixing = finetuning and not is_identity(cfg.finetune_shrink, cfg.finetune_perturb)
            fresh = {k: v.detach().clone() for k, v in model.state_dict().items()} if mixing else {}
            try:
                model.load_state_dict(init_state)
            except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
                notes["weights"] = f"inherited weights did not fit ({str(exc).splitlines()[0]}); trained from scratch"
                model = self.build(genotype, seed, fidelity)  # a failed load may have copied some tensors
            else:
                loaded = True
                if finetuning:
                    cfg = cfg.finetune()
                    shrink_perturb(model, fresh, cfg.finetune_shrink, cfg.finetune_perturb)
        if fidelity is not None:
            continuing = loaded and fidelity.start_epoch > 0
            if loaded and not continuing:
                # a morphism child (or weights from another task): fine-tuned, within the fidelity's epochs
                if fidelity.epochs is not None:
                    cfg = replace(cfg, epochs=max(1, min(cfg.epochs, int(fidelity.epochs))))
            else:
                cfg = at_fidelity(cfg, fidelity, continuing=continuing)
            self._first_epoch = int(fidelity.start_epoch) if continuing else 0
            if fidelity.start_epoch and not continuing:
                notes["fidelity"] = (
                    f"could not continue from epoch {fidelity.start_epoch}: trained {cfg.epochs} epochs from scratch"
                )
        return model, cfg

    def train(
        self,
        model: nn.Module,
        cfg: TrainConfig,
        *,
        seed: int = 0,
        on_epoch: EpochCallback | None = None,
        notes: dict[str, str] | None = None,
        deadline: float | None = None,
        eval_batch: int = 1024,
        data: Mapping[str, torch.Tensor] | None = None,
        first_epoch: int = 0,
    ) -> EvalResult:
        """Train ``model`` (already initialised or inherited) and measure it.

        Args:
            model: The network to train.
            cfg: Trainer settings.
            seed: Seed of the batch order and of dropout-like randomness.
            on_epoch: Called with ``(epoch, {"train_loss", "val_accuracy"})`` after every epoch.
            notes: Remarks carried into the result.
            deadline: ``time.perf_counter()`` value past which the trial fails (checked after
                every batch and every epoch); None: ``cfg.max_seconds`` from now, if set.
            eval_batch: Examples per forward pass when measuring accuracy.
            data: The split tensors to use (a fidelity's subset / resolution); default: all.
            first_epoch: Epochs the weights were already trained for: the curve's epochs are
                numbered from it and ``metrics["epochs"]`` counts them (continued training).

        If ``on_epoch`` raises :class:`StopTraining`, training ends after that epoch and the
        result carries it as ``stopped`` (metrics of the last trained epoch).

        Raises:
            TrialFailed: A non-finite loss or gradient norm, or the deadline passed.
        """
        if deadline is None and cfg.max_seconds is not None:
            deadline = time.perf_counter() + float(cfg.max_seconds)

        def check_time(epoch: int, where: str) -> None:
            if deadline is not None and time.perf_counter() > deadline:
                limit = (
                    "the time limit" if cfg.max_seconds is None else f"{cfg.max_seconds:g} s ([training] max_seconds)"
                )
                raise TrialFailed(f"timed out: over {limit} at epoch {epoch}, {where}")

        data = self._data() if data is None else data
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
        stopped: StopTraining | None = None
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
                    check_time(epoch, f"batch {i // cfg.batch_size}")
                val_acc = accuracy(model, data["x_val"], data["y_val"], batch=eval_batch, amp=cuda)
                point = {"train_loss": total_loss / max(1, seen), "val_accuracy": val_acc}
                curve.append(point)
                if on_epoch is not None:
                    try:
                        on_epoch(first_epoch + epoch, point)
                    except StopTraining as stop:
                        stopped = stop
                        break
                check_time(epoch, "after validation")
        seconds = time.perf_counter() - start
        final = (
            curve[-1]
            if curve
            else {"val_accuracy": accuracy(model, data["x_val"], data["y_val"], batch=eval_batch, amp=cuda)}
        )
        metrics = {
            "val_accuracy": final["val_accuracy"],
            "test_accuracy": accuracy(model, data["x_test"], data["y_test"], batch=eval_batch, amp=cuda),
            "train_seconds": seconds,
            "epochs": float(first_epoch + (len(curve) if stopped is not None else cfg.epochs)),
            "params": float(count_params(model)),
            "latency": inference_latency(model, data["x_val"], amp=cuda),
        }
        if "train_loss" in final:
            metrics["train_loss"] = final["train_loss"]
        if first_epoch:
            metrics["epochs_trained"] = float(len(curve) if stopped is not None else cfg.epochs)
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        return EvalResult(metrics=metrics, curve=curve, state_dict=state, notes=dict(notes or {}), stopped=stopped)


def at_fidelity(cfg: TrainConfig, fidelity: Fidelity, *, continuing: bool) -> TrainConfig:
    """The trainer settings at ``fidelity``: its epochs (only those after ``start_epoch`` when
    ``continuing`` from weights trained that far, at the task's peak learning rate)."""
    if fidelity.epochs is None:
        return cfg
    if continuing:
        return replace(cfg, epochs=max(1, int(fidelity.epochs) - int(fidelity.start_epoch)), lr=cfg.lr)
    return replace(cfg, epochs=int(fidelity.epochs))


def subset_indices(y: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced ``fraction`` of the labels ``y`` (at least one per class).

    Nested: the subset of a larger fraction contains that of a smaller one (one fixed order,
    in which the classes interleave, is cut at ``round(fraction * n)``).
    """
    y = np.asarray(y)
    n = len(y)
    if fraction >= 1.0:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    position = np.empty(n, dtype=np.float64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        order = rng.permutation(len(members))
        position[members[order]] = (np.arange(len(members)) + 0.5) / len(members)
    ranked = np.argsort(position, kind="stable")
    k = max(min(n, len(np.unique(y))), int(round(fraction * n)))
    return np.sort(ranked[:k])


def resized_length(n: int, resolution: float) -> int:
    """An axis of ``n`` samples at ``resolution`` (at least 1)."""
    return max(1, int(round(n * float(resolution))))


def resize_inputs(x: torch.Tensor, resolution: float) -> torch.Tensor:
    """`n x C x L` or `n x C x H x W` inputs downsampled to ``resolution`` of their size per
    spatial axis by area averaging (adaptive average pooling)."""
    if resolution >= 1.0:
        return x
    size = tuple(resized_length(n, resolution) for n in x.shape[2:])
    pool = nn.functional.adaptive_avg_pool1d if x.dim() == 3 else nn.functional.adaptive_avg_pool2d
    return pool(x, size).contiguous()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` and a CPU allocator's "can't allocate memory"."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_device_memory(device: torch.device) -> None:
    """Return cached blocks to the device after an out-of-memory error (CUDA only)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def evaluator_seed(search_seed: int, number: int) -> int:
    """The training seed of trial ``number`` of a search."""
    return int(np.random.SeedSequence([search_seed, number]).generate_state(1)[0])
