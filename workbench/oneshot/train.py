"""Training a cell supernet, resumable at every epoch boundary.

* **SPOS** (single-path one-shot, Guo et al. 2020): every step trains one uniformly sampled
  path (each edge's op drawn from every op of the space, ``none`` included, as the space
  samples), so the shared weights learn to serve every cell; the one-shot estimator then
  scores cells on their paths.
* **DARTS** (Liu et al. 2019): every edge is a softmax-weighted sum of its ops; op logits
  ``alpha`` (`6 x 5`) and the shared weights alternate: an ``alpha`` step on a validation
  batch, then a weight step on a training batch (bilevel). First order by default; ``order=2``
  takes one unrolled virtual weight step and the Hessian-vector product by finite differences
  (the DARTS paper's second-order approximation, the virtual step a plain gradient step at the
  weights' learning rate, since the weights use AdamW).
* **GDAS** (Dong & Yang 2019): like DARTS, but every forward pass samples one op per edge by
  hard Gumbel-softmax (temperature annealed from ``tau_max`` to ``tau_min``) and computes only
  that op; the straight-through one-hot weight carries gradients to every logit. Chosen as the
  variant that resists DARTS' collapse to parameter-free ops: an op only gets weight updates
  when sampled, so skip and pooling cannot win by being the easiest path through an
  over-parameterised mixture, and the architecture gradient compares sampled sub-networks
  rather than a mixture that never exists after discretisation; it also costs one op per edge
  per step (as SPOS), which matters on a CPU. (DrNAS and beta-DARTS keep the full mixture.)

Everything random (init, batch order, sampled paths, Gumbel noise) comes from the seed and one
``torch.Generator`` whose state is part of the checkpoint, so a run resumed from epoch ``k``
trains exactly as the uninterrupted run (on CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from workbench.data.base import Splits
from workbench.errors import TrialFailed, UserError
from workbench.evaluate.trainer import accuracy, pick_device
from workbench.nn.supernet import CellSupernet, Mixture, PathNet, build_supernet
from workbench.oneshot.settings import DARTS, GDAS, SPOS, SupernetSettings
from workbench.oneshot.warm import WarmReport, warm_load
from workbench.space.cell import CELL_OPS, EDGES
from workbench.space.relaxation import OpWeights

#: ``on_epoch(epoch, metrics, op_weights, checkpoint)``: after every epoch; ``checkpoint()``
#: returns the state to resume from (CPU tensors and plain values; ``torch.save``-able and
#: loadable with ``weights_only=True``).
EpochHook = Callable[[int, Mapping[str, float], "OpWeights | None", Callable[[], dict]], None]
#: Fixed random paths whose mean validation accuracy is SPOS' per-epoch curve.
PROBE_PATHS = 3
#: Version of the checkpoint layout.
CHECKPOINT_VERSION = 1


@dataclass
class SupernetResult:
    """A trained supernet.

    Attributes:
        supernet: The network (on the training device, eval mode).
        op_weights: The final op weights (DARTS, GDAS), None for SPOS.
        curve: Per-epoch metrics of every epoch trained (a resumed run: from the checkpoint's).
        history: Op weights after every epoch (DARTS, GDAS).
        seconds: Training time of this run (not of the epochs before a resumed checkpoint).
        epochs: Epochs trained in all.
        resumed_from: The epoch the run continued from (0: from scratch).
    """

    supernet: CellSupernet
    op_weights: OpWeights | None
    curve: list[dict[str, float]] = field(default_factory=list)
    history: list[OpWeights] = field(default_factory=list)
    seconds: float = 0.0
    epochs: int = 0
    resumed_from: int = 0


def softmax_weights(alpha: torch.Tensor) -> OpWeights:
    """Op weights (softmax of the logits per edge) as a torch-free record."""
    probs = torch.softmax(alpha.detach().float().cpu(), dim=-1).double().numpy()
    return OpWeights.from_array(EDGES, CELL_OPS, probs)


class SupernetTrainer:
    """Trains one supernet of a cell space on a task's splits.

    Args:
        splits: The task's data (training: weights; validation: op logits and the curve).
        config: The task's trainer settings (device; defaults of ``settings``).
        macro: The cell skeleton (``stages``, ``cells_per_stage``, ``width``).
        settings: Method and settings (missing values from ``config``).
        seed: Seed of everything random.
        device: ``cuda`` / ``cpu`` / None (the config's, else CUDA when available).
        init: A supernet state dict (another task's) to start from instead of the random
            initialisation: the tensors that fit are copied, stem and head stay fresh
            (:func:`~workbench.oneshot.warm.warm_load`; not applied on resume). What was copied
            is :attr:`warm`.
        init_alpha: Op logits (edges x ops, another task's DARTS / GDAS run) to start the
            relaxation from instead of near-uniform ones (not applied on resume).
    """

    def __init__(
        self,
        splits: Splits,
        config: Any,
        macro: Mapping[str, int],
        settings: SupernetSettings,
        *,
        seed: int = 0,
        device: str | None = None,
        init: Mapping[str, torch.Tensor] | None = None,
        init_alpha: torch.Tensor | None = None,
    ) -> None:
        self.splits = splits
        self.init = init
        self.init_alpha = init_alpha
        self.warm: WarmReport | None = None
        self.settings = settings.resolved(config)
        if self.settings.order == 2 and self.settings.method != DARTS:
            raise UserError(f"order=2 is a DARTS setting; {self.settings.method} is first-order")
        self.macro = dict(macro)
        self.seed = int(seed)
        self.device = pick_device(device or getattr(config, "device", None))
        self.cuda = self.device.type == "cuda"
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=float(getattr(config, "label_smoothing", 0.0)))
        dev = self.device
        self.x_tr = torch.from_numpy(splits.x_train).to(dev)
        self.y_tr = torch.from_numpy(splits.y_train).to(dev)
        self.x_val = torch.from_numpy(splits.x_val).to(dev)
        self.y_val = torch.from_numpy(splits.y_val).to(dev)
        probe = torch.Generator().manual_seed(self.seed + 1)
        self.probes = [self._path(probe) for _ in range(PROBE_PATHS)]

    # -- building -----------------------------------------------------------------------------
    def _fresh(self) -> None:
        s = self.settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = build_supernet(self.macro, self.splits.input_shape, self.splits.n_classes)
            alpha = 1e-3 * torch.randn(len(EDGES), len(CELL_OPS))
        if self.init is not None:
            self.warm = warm_load(self.net, self.init)
        if self.init_alpha is not None and tuple(self.init_alpha.shape) == tuple(alpha.shape):
            alpha = self.init_alpha.detach().to(dtype=alpha.dtype, device="cpu").clone()
        self.net = self.net.to(self.device)
        if self.cuda and len(self.splits.input_shape) == 3:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.alpha = alpha.to(self.device).requires_grad_(s.method != SPOS)
        self.w_opt = torch.optim.AdamW(self.net.parameters(), lr=s.w_lr, weight_decay=s.w_wd)
        steps = max(1, math.ceil(len(self.y_tr) / s.batch_size))
        total = max(1, s.epochs * steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.w_opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total))
        )
        self.a_opt = torch.optim.Adam([self.alpha], lr=s.alpha_lr, betas=(0.5, 0.999), weight_decay=s.alpha_wd)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.curve: list[dict[str, float]] = []
        self.history: list[OpWeights] = []
        self.epoch = 0

    def checkpoint(self) -> dict[str, Any]:
        """The state after the last finished epoch (CPU tensors and plain values)."""
        return {
            "version": CHECKPOINT_VERSION,
            "settings": self.settings.to_dict(),
            "seed": self.seed,
            "macro": dict(self.macro),
            "epoch": self.epoch,
            "supernet": {k: v.detach().to("cpu", copy=True) for k, v in self.net.state_dict().items()},
            "alpha": self.alpha.detach().to("cpu", copy=True),
            "w_opt": _to_cpu(self.w_opt.state_dict()),
            "a_opt": _to_cpu(self.a_opt.state_dict()),
            "sched": self.sched.state_dict(),
            "generator": self.gen.get_state(),
            "curve": [dict(p) for p in self.curve],
            "history": [[list(row) for row in w.probs] for w in self.history],
        }

    def compatible(self, state: Mapping[str, Any]) -> str:
        """Why ``state`` cannot be resumed by this trainer (``""``: it can)."""
        try:
            if state.get("version") != CHECKPOINT_VERSION:
                return f"checkpoint version {state.get('version')!r}, expected {CHECKPOINT_VERSION}"
            if dict(state["settings"]) != self.settings.to_dict():
                return "its settings differ"
            if int(state["seed"]) != self.seed or dict(state["macro"]) != self.macro:
                return "its seed or skeleton differ"
            if not 0 < int(state["epoch"]) <= self.settings.epochs:
                return f"its epoch {state['epoch']} is outside 1..{self.settings.epochs}"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return f"it is malformed ({type(exc).__name__}: {exc})"
        return ""

    def _load(self, state: Mapping[str, Any]) -> None:
        self._fresh()
        self.net.load_state_dict(state["supernet"])
        with torch.no_grad():
            self.alpha.copy_(state["alpha"].to(self.device))
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["generator"])
        self.curve = [dict(p) for p in state["curve"]]
        self.history = [OpWeights.from_array(EDGES, CELL_OPS, rows) for rows in state["history"]]
        self.epoch = int(state["epoch"])

    # -- architectures ------------------------------------------------------------------------
    def _path(self, gen: torch.Generator) -> tuple[str, ...]:
        """A uniformly random path (every op of the space on each edge, ``none`` included)."""
        return tuple(CELL_OPS[int(k)] for k in torch.randint(len(CELL_OPS), (len(EDGES),), generator=gen))

    def _gumbel(self, tau: float) -> Mixture:
        """GDAS: one op per edge by hard Gumbel-softmax, straight-through weights."""
        u = torch.rand(self.alpha.shape, generator=self.gen).clamp_(1e-10, 1 - 1e-10).to(self.device)
        soft = torch.softmax((self.alpha - torch.log(-torch.log(u))) / tau, dim=-1)
        index = soft.argmax(dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, index[:, None], 1.0)
        return Mixture(hard - soft.detach() + soft, tuple(int(i) for i in index.cpu()))

    def _arch(self, tau: float, grad: bool) -> Any:
        """The architecture of one step: a path (SPOS), the mixture (DARTS), a sample (GDAS)."""
        method = self.settings.method
        if method == SPOS:
            return self._path(self.gen)
        if method == DARTS:
            w = torch.softmax(self.alpha, dim=-1)
            return Mixture(w if grad else w.detach())
        mix = self._gumbel(tau)
        return mix if grad else Mixture(mix.weights.detach(), mix.index)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, arch: Any) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            return self.loss_fn(self.net(x, arch), y)

    def tau(self, epoch: int) -> float:
        """GDAS' temperature at ``epoch`` (linear from ``tau_max`` to ``tau_min``)."""
        s = self.settings
        return s.tau_max - (s.tau_max - s.tau_min) * epoch / max(1, s.epochs - 1)

    # -- steps --------------------------------------------------------------------------------
    def _alpha_step(self, xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, tau: float) -> None:
        self.a_opt.zero_grad(set_to_none=True)
        if self.settings.order == 2:
            self.alpha.grad = self._second_order_grad(xt, yt, xv, yv)
        else:
            loss = self._loss(xv, yv, self._arch(tau, grad=True))
            (self.alpha.grad,) = torch.autograd.grad(loss, [self.alpha])
        if not torch.isfinite(self.alpha.grad).all():
            raise TrialFailed(f"supernet diverged: op-weight gradient is not finite at epoch {self.epoch}")
        self.a_opt.step()

    def _second_order_grad(
        self, xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor
    ) -> torch.Tensor:
        """d L_val(w - xi * dL_train/dw, alpha) / d alpha, the Hessian term by finite differences."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        xi = self.sched.get_last_lr()[0]
        backup = [p.detach().clone() for p in params]
        grads = torch.autograd.grad(self._loss(xt, yt, self._arch(0.0, grad=False)), params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads):
                if g is not None:
                    p.sub_(xi * g)
        out = torch.autograd.grad(
            self._loss(xv, yv, self._arch(0.0, grad=True)), [self.alpha, *params], allow_unused=True
        )
        d_alpha, dw = out[0], [torch.zeros_like(p) if g is None else g for p, g in zip(params, out[1:])]
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in dw))
        r = 0.01 / (float(norm) + 1e-12)

        def alpha_grad_at(sign: float) -> torch.Tensor:
            with torch.no_grad():
                for p, b, g in zip(params, backup, dw):
                    p.copy_(b + sign * r * g)
            (g_a,) = torch.autograd.grad(self._loss(xt, yt, self._arch(0.0, grad=True)), [self.alpha])
            return g_a

        hessian = (alpha_grad_at(1.0) - alpha_grad_at(-1.0)) / (2 * r)
        with torch.no_grad():
            for p, b in zip(params, backup):
                p.copy_(b)
        return d_alpha - xi * hessian

    def _weight_step(self, x: torch.Tensor, y: torch.Tensor, tau: float) -> float:
        if self.settings.fair and self.settings.method == SPOS:
            perms = [torch.randperm(len(CELL_OPS), generator=self.gen) for _ in EDGES]
            archs: list[Any] = [tuple(CELL_OPS[int(p[k])] for p in perms) for k in range(len(CELL_OPS))]
        else:
            archs = [self._arch(tau, grad=False)]
        self.w_opt.zero_grad(set_to_none=True)
        total = 0.0
        for arch in archs:
            loss = self._loss(x, y, arch)
            if not torch.isfinite(loss.detach()):
                raise TrialFailed(f"supernet diverged: training loss is {float(loss.detach())} at epoch {self.epoch}")
            loss.backward()
            total += float(loss.detach()) / len(archs)
        gnorm = nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.grad_clip)
        if not torch.isfinite(gnorm):
            raise TrialFailed(f"supernet diverged: gradient norm is {float(gnorm)} at epoch {self.epoch}")
        self.w_opt.step()
        self.sched.step()
        return total

    # -- the loop -----------------------------------------------------------------------------
    def run(self, on_epoch: EpochHook | None = None, resume: Mapping[str, Any] | None = None) -> SupernetResult:
        """Train (from ``resume``, a :meth:`checkpoint`, when given) to the last epoch.

        Raises:
            UserError: ``resume`` does not fit these settings (:meth:`compatible`).
            TrialFailed: The training diverged.
        """
        if resume is not None:
            why = self.compatible(resume)
            if why:
                raise UserError(f"cannot resume the supernet from its checkpoint: {why}")
            self._load(resume)
        else:
            self._fresh()
        start_epoch = self.epoch
        s = self.settings
        start = time.perf_counter()
        n, n_val = len(self.y_tr), len(self.y_val)
        with torch.random.fork_rng(devices=[self.device.index or 0] if self.cuda else []):
            torch.manual_seed(self.seed + 1000 * self.epoch)
            while self.epoch < s.epochs:
                epoch = self.epoch
                tau = self.tau(epoch)
                self.net.train()
                perm = torch.randperm(n, generator=self.gen).to(self.device)
                val_perm = torch.randperm(n_val, generator=self.gen).to(self.device)
                moving = s.method != SPOS and epoch >= s.warmup_epochs
                total, seen, v = 0.0, 0, 0
                for i in range(0, n, s.batch_size):
                    idx = perm[i : i + s.batch_size]
                    if len(idx) < 2:
                        continue  # batch norm needs two examples
                    xb, yb = self.x_tr[idx], self.y_tr[idx]
                    if moving:
                        vidx = val_perm[(torch.arange(len(idx), device=self.device) + v) % n_val]
                        v = (v + len(idx)) % n_val
                        self._alpha_step(xb, yb, self.x_val[vidx], self.y_val[vidx], tau)
                    total += self._weight_step(xb, yb, tau) * len(idx)
                    seen += len(idx)
                self.epoch += 1
                point = {"train_loss": total / max(1, seen), **self._measure(tau)}
                self.curve.append(point)
                weights = None
                if s.method != SPOS:
                    weights = softmax_weights(self.alpha)
                    self.history.append(weights)
                if on_epoch is not None:
                    on_epoch(epoch, point, weights, self.checkpoint)
        self.net.eval()
        return SupernetResult(
            supernet=self.net,
            op_weights=softmax_weights(self.alpha) if s.method != SPOS else None,
            curve=list(self.curve),
            history=list(self.history),
            seconds=time.perf_counter() - start,
            epochs=self.epoch,
            resumed_from=start_epoch,
        )

    def _measure(self, tau: float) -> dict[str, float]:
        """The epoch's validation metrics: the mean over fixed random paths (SPOS), the mixture
        (DARTS) or the derived path (GDAS); for DARTS and GDAS also the derived path's."""
        acc = self.path_accuracy
        if self.settings.method == SPOS:
            return {"val_accuracy": sum(acc(p) for p in self.probes) / len(self.probes)}
        derived = acc(softmax_weights(self.alpha).derive())
        if self.settings.method == GDAS:
            return {"val_accuracy": derived, "derived_val_accuracy": derived, "tau": tau}
        mixed = acc(Mixture(torch.softmax(self.alpha.detach(), dim=-1)))
        return {"val_accuracy": mixed, "derived_val_accuracy": derived}

    def path_accuracy(self, arch: Any) -> float:
        """Validation accuracy of the supernet on ``arch`` (a path or a mixture)."""
        return accuracy(PathNet(self.net, arch), self.x_val, self.y_val, amp=self.cuda)


def _to_cpu(value: Any) -> Any:
    """A copy of an optimizer state with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
