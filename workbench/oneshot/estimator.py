"""The one-shot estimator: an Evaluator that scores a genotype by a trained supernet's
validation accuracy on the genotype's path (inherited shared weights, no training).

The shared BatchNorm statistics mix every path the supernet was trained on; with
``bn_recalibrate`` they are recomputed on the scored path from a fixed set of training batches
(the same for every genotype) before measuring, then restored, so the supernet is left as it
was and every estimate is independent of the order of evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from workbench.errors import TrialFailed
from workbench.evaluate.base import EpochCallback, EvalResult
from workbench.nn.supernet import CellSupernet, PathNet, path_param_count
from workbench.space.cell import read_cell
from workbench.space.genotype import Genotype

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class OneShotEstimator:
    """Scores genotypes of a cell space with a trained supernet (:meth:`attach` it first).

    Args:
        inner: The task's trained evaluator (its splits, settings, objective and device).
        bn_recalibrate: Recompute BatchNorm statistics on each scored path.
        bn_batches: Training batches (of the task's batch size) the recalibration runs.

    The metrics of an estimate: the objective (``val_accuracy`` or ``neg_val_loss``, from the
    supernet), ``val_loss``, ``params`` (of the stand-alone network) and ``train_seconds`` (the
    seconds the estimate took). It has no ``test_accuracy``: an estimate is not a measurement of
    the architecture, and the retrained trials report that.
    """

    #: The name a trial scored by this estimator is tagged with.
    name: ClassVar[str] = "oneshot"

    def __init__(self, inner: Any, *, bn_recalibrate: bool = True, bn_batches: int = 8) -> None:
        self.inner = inner
        self.objective = inner.objective
        self.splits = inner.splits
        self.config = inner.config
        self.device = inner.device
        self.bn_recalibrate = bool(bn_recalibrate)
        self.bn_batches = int(bn_batches)
        self.supernet: CellSupernet | None = None
        self._tensors: dict[str, torch.Tensor] | None = None

    @property
    def label(self) -> str:
        """``oneshot`` or ``oneshot+bn`` (with BatchNorm recalibration)."""
        return self.name + ("+bn" if self.bn_recalibrate else "")

    def attach(self, supernet: CellSupernet) -> None:
        """Use ``supernet`` (trained) for every estimate from now on."""
        self.supernet = supernet.to(self.device).eval()

    def _data(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            s, dev = self.splits, self.device
            n = len(s.y_train)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
            keep = order[: min(n, self.bn_batches * int(self.config.batch_size))]
            self._tensors = {
                "x_cal": torch.from_numpy(s.x_train)[keep].to(dev),
                "x_val": torch.from_numpy(s.x_val).to(dev),
                "y_val": torch.from_numpy(s.y_val).to(dev),
            }
        return self._tensors

    @torch.no_grad()
    def score(self, ops: Sequence[str]) -> dict[str, float]:
        """``val_accuracy`` and ``val_loss`` of the path ``ops`` on the supernet."""
        net = self.supernet
        if net is None:
            raise TrialFailed("the one-shot estimator has no trained supernet (attach one first)")
        data = self._data()
        cuda = self.device.type == "cuda"
        saved = _norm_state(net) if self.bn_recalibrate else None
        try:
            if saved is not None:
                _recalibrate(net, tuple(ops), data["x_cal"], int(self.config.batch_size), cuda)
            net.eval()
            model = PathNet(net, tuple(ops))
            x, y = data["x_val"], data["y_val"]
            correct, loss = 0, 0.0
            for i in range(0, len(y), 1024):
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cuda):
                    logits = model(x[i : i + 1024]).float()
                correct += int((logits.argmax(1) == y[i : i + 1024]).sum())
                loss += float(nn.functional.cross_entropy(logits, y[i : i + 1024], reduction="sum"))
        finally:
            if saved is not None:
                _restore_norms(net, saved)
        n = max(1, len(y))
        return {"val_accuracy": correct / n, "val_loss": loss / n}

    def evaluate(
        self,
        genotype: Genotype,
        *,
        seed: int = 0,
        init_state: Mapping[str, Any] | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> EvalResult:
        """The estimate of ``genotype`` (``seed``, ``init_state`` and ``on_epoch`` are unused:
        nothing is trained)."""
        start = time.perf_counter()
        ops = read_cell(genotype)[0]
        scores = self.score(ops)
        metrics = {
            **scores,
            "neg_val_loss": -scores["val_loss"],
            "params": float(path_param_count(self.supernet, ops)),
            "train_seconds": time.perf_counter() - start,
        }
        return EvalResult(metrics=metrics, notes={})


def _norm_state(net: nn.Module) -> dict[str, tuple[dict[str, torch.Tensor], Any]]:
    """Every BatchNorm layer's statistics and momentum (to put back after a recalibration)."""
    return {
        name: (
            {k: v.clone() for k, v in m.state_dict().items() if not k.endswith("weight") and k != "bias"},
            m.momentum,
        )
        for name, m in net.named_modules()
        if isinstance(m, _NORMS)
    }


def _restore_norms(net: nn.Module, saved: Mapping[str, tuple[dict[str, torch.Tensor], Any]]) -> None:
    for name, m in net.named_modules():
        if name in saved:
            buffers, momentum = saved[name]
            for k, v in buffers.items():
                getattr(m, k).copy_(v)
            m.momentum = momentum


@torch.no_grad()
def _recalibrate(net: nn.Module, ops: tuple[str, ...], x: torch.Tensor, batch: int, cuda: bool) -> None:
    """BatchNorm statistics of the path ``ops``: reset, then a cumulative average over ``x``."""
    for m in net.modules():
        if isinstance(m, _NORMS):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        if len(xb) < 2:
            continue
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cuda):
            net(xb, ops)
    net.eval()
