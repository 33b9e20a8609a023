"""RL search: an autoregressive LSTM controller trained with REINFORCE or PPO (Zoph & Le, 2017).

The controller builds a genotype one decision at a time through the space's token view
(:mod:`workbench.strategy.tokens`): at each step an LSTM reads the previous decision, the type
of the next one and its position, and the softmax head of that type (invalid choices masked)
picks it. Rewards are the observations' values; the policy gradient uses a moving-average
baseline and an entropy bonus (REINFORCE), or a clipped surrogate over a few epochs (PPO), plus
by default a likelihood term on the best genotypes so far (``elite``). A space without a
codec falls back to a *preference* policy: sample ``candidates`` genotypes, score their
encodings with a small network, pick one by softmax, trained by the same rule.

Determinism (the :class:`~workbench.strategy.base.Strategy` contract): the weights are a pure
function of the seed, the prior and the sequence of observations. They are initialised from a
``torch.Generator`` seeded with ``seed`` (the global torch RNG is never used), and the told
observations are learned in order in fixed chunks of ``batch_size`` (an incomplete chunk waits for
the next tell), so one tell of everything and many small tells give the same controller.
Sampling draws from a ``torch.Generator`` seeded by :meth:`Strategy.rng_for`, so ``ask`` changes
no state. The controller is small and always runs on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.errors import InvalidGenotype, UserError
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.backoff import backoff_turn
from workbench.strategy.base import ORIGIN_PRIOR, ORIGIN_TRANSFER, Observation, Proposal, Strategy, WarmStart
from workbench.strategy.rl_policy import PreferencePolicy, SequencePolicy
from workbench.strategy.tokens import TokenCodec, make_codec

ALGORITHMS = ("reinforce", "ppo")
#: Warm-start schedules (see :class:`ReinforceController`'s ``schedule``).
SCHEDULES = ("backoff", "always")
#: ``n_init`` of the backoff rule: the first (warm) ask is judged against this many minus one after it.
WARM_JUDGE_ASKS = 2
#: A warm ask succeeds when it scores at least this quantile of the target's values before it:
#: 1.0, a new best, as BO's (the twin's picks are rarely poor, so the median or the upper
#: quartile kept it proposing a quarter to a third of the asks on targets it did not help;
#: ``benchmarks/results/transfer.md``).
WARM_QUANTILE = 1.0


#: Upper bounds of the controller's sizes: beyond them memory or time runs out, not the search.
MAX_HIDDEN = 4096
MAX_PPO_EPOCHS = 1000
MAX_RESAMPLE = 100_000
MAX_CANDIDATES = 10_000


class ReinforceController(Strategy):
    """An LSTM controller over the space's decisions, trained by policy gradient.

    Rewards are observation values; a failed observation gets the worst successful value seen
    so far (one standard deviation below the baseline before any success), so failures are
    never rewarded. Advantages are ``reward - baseline`` over a moving standard deviation, with
    the baseline a moving average with decay ``baseline_decay``.

    Each update also maximises the likelihood of the ``elite`` best genotypes seen so far
    (priority-queue training, Abolafia et al. 2018), weighted by ``elite_weight``: with the few
    hundred evaluations of a NAS budget this is what makes the controller sample-efficient.
    ``elite=0`` gives plain REINFORCE / PPO.

    Args:
        space: The search space.
        seed: Seed of the initial weights and of every sample.
        algorithm: ``"reinforce"`` (one gradient step per chunk) or ``"ppo"`` (clipped
            surrogate, ``ppo_epochs`` steps per chunk).
        lr: Adam learning rate.
        entropy_weight: Weight of the entropy bonus.
        baseline_decay: Decay of the moving-average baseline (and of the reward variance).
        hidden_size: LSTM width.
        batch_size: Observations per update chunk (default 1 for REINFORCE, 8 for PPO).
        ppo_epochs: Gradient steps per chunk with PPO.
        ppo_clip: PPO's clipping range ``epsilon``.
        tanh_constant: Logits are squashed to ``±tanh_constant`` (keeps some exploration); 0 = off.
        max_grad_norm: Gradient-norm clip.
        elite: Number of best-so-far genotypes whose likelihood each update raises (0 = off).
        elite_weight: Weight of that likelihood term.
        resample: Samples drawn before giving up on an unseen genotype from the controller
            (then mutations of the last sample, then a fresh space sample).
        candidates: Size of the candidate set of the preference fallback (spaces without a codec).
        codec: ``"auto"`` (the space's codec, else the fallback) or ``"preference"`` (force it).
        prior: Warm start: :class:`Observation` s (of other tasks, same space) pre-train a
            controller (:meth:`pretrain`); genotypes are proposed first.
        schedule: Who proposes in a warm-started search. ``"backoff"`` (default): two
            controllers, this cold one and a twin pre-trained on the prior's observations, both
            learning every observation of the target; the twin proposes by
            :mod:`workbench.strategy.backoff`'s rule (the first ask, then a turn after ``gap``
            cold asks: 1 while its picks are new bests, doubling after each that is not), so
            a misleading prior costs few asks.
            ``"always"``: one controller, pre-trained, proposes every ask (no way back).

    Raises:
        UserError: On a bad option.
    """

    name = "rl"

    @classmethod
    def warm_start_options(cls, warm: WarmStart, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every architecture of the trusted sources (weight above 0), with its per-task
        standardized value, pre-trains the controller (``prior``)."""
        prior = [
            Observation(g, float(v))
            for s in warm.sources
            if s.weight > 0
            for g, v in zip(s.genotypes, s.standardized())
        ]
        return {"prior": prior}

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        algorithm: str = "reinforce",
        lr: float = 0.02,
        entropy_weight: float = 0.01,
        baseline_decay: float = 0.9,
        hidden_size: int = 64,
        batch_size: int | None = None,
        ppo_epochs: int = 4,
        ppo_clip: float = 0.2,
        tanh_constant: float = 2.5,
        max_grad_norm: float = 5.0,
        elite: int = 5,
        elite_weight: float = 1.0,
        resample: int = 64,
        candidates: int = 16,
        codec: str = "auto",
        prior: Sequence[Observation | Genotype] = (),
        schedule: str = "backoff",
    ) -> None:
        super().__init__(space, seed)
        if schedule not in SCHEDULES:
            raise UserError(f"rl schedule must be one of {list(SCHEDULES)}; got {schedule!r}")
        if algorithm not in ALGORITHMS:
            raise UserError(f"rl algorithm must be one of {list(ALGORITHMS)}; got {algorithm!r}")
        if codec not in ("auto", "preference"):
            raise UserError(f"rl codec must be 'auto' or 'preference'; got {codec!r}")
        checks = {
            "lr": lr > 0,
            "entropy_weight": entropy_weight >= 0,
            "baseline_decay": 0 <= baseline_decay < 1,
            "hidden_size": 1 <= int(hidden_size) <= MAX_HIDDEN,
            "ppo_epochs": 1 <= int(ppo_epochs) <= MAX_PPO_EPOCHS,
            "ppo_clip": ppo_clip > 0,
            "tanh_constant": tanh_constant >= 0,
            "max_grad_norm": max_grad_norm > 0,
            "resample": 1 <= int(resample) <= MAX_RESAMPLE,
            "candidates": 2 <= int(candidates) <= MAX_CANDIDATES,
            "elite": int(elite) >= 0,
            "elite_weight": elite_weight >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            given = {
                "lr": lr,
                "entropy_weight": entropy_weight,
                "baseline_decay": baseline_decay,
                "hidden_size": hidden_size,
                "ppo_epochs": ppo_epochs,
                "ppo_clip": ppo_clip,
                "tanh_constant": tanh_constant,
                "max_grad_norm": max_grad_norm,
                "resample": resample,
                "candidates": candidates,
                "elite": elite,
                "elite_weight": elite_weight,
            }
            raise UserError(
                "bad rl option(s): "
                + ", ".join(f"{k}={given[k]!r}" for k in bad)
                + " (lr, ppo_clip, max_grad_norm > 0; entropy_weight, tanh_constant, elite, elite_weight >= 0; "
                f"0 <= baseline_decay < 1; 1 <= hidden_size <= {MAX_HIDDEN}; 1 <= ppo_epochs <= {MAX_PPO_EPOCHS}; "
                f"1 <= resample <= {MAX_RESAMPLE}; 2 <= candidates <= {MAX_CANDIDATES})"
            )
        if batch_size is None:
            batch_size = 1 if algorithm == "reinforce" else 8
        if int(batch_size) < 1:
            raise UserError(f"rl batch_size must be >= 1; got {batch_size!r}")
        self.algorithm = algorithm
        self.lr = float(lr)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.hidden_size = int(hidden_size)
        self.batch_size = int(batch_size)
        self.ppo_epochs = int(ppo_epochs)
        self.ppo_clip = float(ppo_clip)
        self.max_grad_norm = float(max_grad_norm)
        self.resample = int(resample)
        self.elite = int(elite)
        self.elite_weight = float(elite_weight)
        self.sample_batch = 8

        gen = torch.Generator().manual_seed(self.seed)
        self.codec: TokenCodec | None = make_codec(space) if codec == "auto" else None
        self.policy: SequencePolicy | PreferencePolicy
        if self.codec is not None:
            self.policy = SequencePolicy(self.codec, self.hidden_size, gen, tanh_constant)
        else:
            self.policy = PreferencePolicy(space, self.hidden_size, gen, int(candidates), self.seed)
        self._optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.lr)
        self._reset_stats()
        self._learned = 0  # observations of ``history`` already learned
        self._pretrained = 0  # pretrain calls so far
        self.updates = 0  # gradient updates so far (chunks learned)

        self.prior_genotypes = [p for p in prior if isinstance(p, Genotype)]
        prior_obs = [p for p in prior if isinstance(p, Observation)]
        odd = [type(p).__name__ for p in prior if not isinstance(p, (Genotype, Observation))]
        if odd:
            raise UserError(f"rl prior must hold Observations or Genotypes; got {sorted(set(odd))}")
        self.schedule = schedule
        #: The controller pre-trained on the prior (``schedule="backoff"`` with a prior), else None.
        self.warm_twin: ReinforceController | None = None
        if prior_obs and schedule == "backoff":
            options = {
                "algorithm": algorithm,
                "lr": lr,
                "entropy_weight": entropy_weight,
                "baseline_decay": baseline_decay,
                "hidden_size": hidden_size,
                "batch_size": batch_size,
                "ppo_epochs": ppo_epochs,
                "ppo_clip": ppo_clip,
                "tanh_constant": tanh_constant,
                "max_grad_norm": max_grad_norm,
                "elite": elite,
                "elite_weight": elite_weight,
                "resample": resample,
                "candidates": candidates,
                "codec": codec,
            }
            self.warm_twin = ReinforceController(space, seed, **options, prior=prior_obs, schedule="always")
        elif prior_obs:
            self.pretrain(prior_obs)

    # -- learning ----------------------------------------------------------------------------

    def _reset_stats(self) -> None:
        self._baseline: float | None = None
        self._var = 0.0
        self._worst: float | None = None

    def _advantage(self, obs: Observation) -> float:
        """The normalised advantage of ``obs``; updates the baseline and reward statistics."""
        if obs.ok:
            r = float(obs.value)  # type: ignore[arg-type]
            self._worst = r if self._worst is None else min(self._worst, r)
        elif self._worst is not None:
            r = self._worst
        else:
            return -1.0
        if self._baseline is None:
            self._baseline = r
            return 0.0
        d = r - self._baseline
        decay = self.baseline_decay
        self._var = decay * self._var + (1 - decay) * d * d
        self._baseline = decay * self._baseline + (1 - decay) * r
        return float(np.clip(d / math.sqrt(self._var), -5.0, 5.0)) if self._var > 0 else 0.0

    def _elite_items(self, seen: Sequence[tuple[Observation, tuple[int, ...]]]) -> list[Any]:
        """Prepared items of the ``elite`` best successes among ``seen`` (ties: earliest first)."""
        if self.elite <= 0:
            return []
        ranked = sorted((i for i, (o, _) in enumerate(seen) if o.ok), key=lambda i: (-float(seen[i][0].value), i))
        items = []
        for i in ranked:
            try:
                items.append(self.policy.prepare(seen[i][0].genotype, seen[i][1]))
            except InvalidGenotype:
                continue
            if len(items) == self.elite:
                break
        return items

    def _update(
        self,
        chunk: Sequence[tuple[Observation, tuple[int, ...]]],
        seen: Sequence[tuple[Observation, tuple[int, ...]]],
    ) -> None:
        """One learning step on ``chunk`` (observation, salt) pairs; ``seen`` = all so far."""
        items, advs = [], []
        for obs, salt in chunk:
            try:
                item = self.policy.prepare(obs.genotype, salt)
            except InvalidGenotype:
                continue  # another space's genotype (warm start): nothing to learn
            advs.append(self._advantage(obs))
            items.append(item)
        if not items:
            return
        adv = torch.tensor(advs, dtype=torch.float32)
        elite = self._elite_items(seen)
        n = len(items)

        def loss_terms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """Log-probabilities and entropies of the chunk, and the elite likelihood loss."""
            logp, ent = self.policy.evaluate(items + elite)  # one batched pass
            elite_loss = -self.elite_weight * logp[n:].mean() if elite else torch.zeros(())
            return logp[:n], ent[:n], elite_loss

        if self.algorithm == "reinforce":
            logp, ent, elite_loss = loss_terms()
            self._step(-(adv * logp).mean() - self.entropy_weight * ent.mean() + elite_loss)
        else:
            with torch.no_grad():
                old, _ = self.policy.evaluate(items)
            for _ in range(self.ppo_epochs):
                logp, ent, elite_loss = loss_terms()
                ratio = torch.exp(logp - old)
                clipped = torch.clamp(ratio, 1 - self.ppo_clip, 1 + self.ppo_clip)
                surrogate = torch.minimum(ratio * adv, clipped * adv)
                self._step(-surrogate.mean() - self.entropy_weight * ent.mean() + elite_loss)
        self.updates += 1

    def _step(self, loss: torch.Tensor) -> None:
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self._optimizer.step()

    def tell(self, observations: Sequence[Observation]) -> None:
        """Record outcomes and learn every complete chunk of ``batch_size``, in order (the warm
        twin too)."""
        super().tell(observations)
        if self.warm_twin is not None:
            self.warm_twin.tell(observations)
        while len(self.history) - self._learned >= self.batch_size:
            hi = self._learned + self.batch_size
            seen = [(o, (0, j)) for j, o in enumerate(self.history[:hi])]
            self._update(seen[self._learned : hi], seen)
            self._learned = hi

    def pretrain(self, observations: Sequence[Observation], epochs: int = 1) -> None:
        """Learn from other tasks' observations (same space) with the same update rule.

        Reward statistics (baseline, scale, worst value) start afresh for these observations
        and again afterwards, so the task's own rewards are not compared with another task's.
        Genotypes this space cannot code are skipped. Call it before the first ``tell`` (or
        pass ``prior=``): it is part of the state that replay must reproduce.

        Args:
            observations: Observations in the order to learn them (one task per call is best).
            epochs: Passes over them.
        """
        obs = list(observations)
        call = self._pretrained
        self._pretrained += 1
        for epoch in range(int(epochs)):
            self._reset_stats()
            seen = [(o, (1, call, epoch, j)) for j, o in enumerate(obs)]
            for lo in range(0, len(obs), self.batch_size):
                hi = lo + self.batch_size
                self._update(seen[lo:hi], seen[:hi])
        self._reset_stats()
        self._optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.lr)

    # -- proposing ---------------------------------------------------------------------------

    def ask(self, n: int = 1, *, pending: Sequence[Genotype] = ()) -> list[Proposal]:
        rng = self.rng_for(pending)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        taken = {g.key for g in pending}
        queued = [g for g in self.prior_genotypes if self.is_new(g, taken) and self.space.contains(g)]
        # the warm twin's turn is decided on the told values; in a batch it proposes first
        twin = self.warm_twin if self.warm_turn() else None
        out: list[Proposal] = []
        for _ in range(n):
            if queued:
                out.append(Proposal(queued.pop(0), origin=ORIGIN_PRIOR))
            elif twin is not None:
                out.append(Proposal(twin._propose(rng, gen, taken), origin=ORIGIN_TRANSFER))
                twin = None
            else:
                out.append(Proposal(self._propose(rng, gen, taken)))
            taken.add(out[-1].genotype.key)
        return out

    def warm_turn(self) -> bool:
        """True when the next ask is the warm twin's (:func:`~workbench.strategy.backoff.backoff_turn`
        on the target's successful values, with one cold ask to judge the first warm one)."""
        if self.warm_twin is None:
            return False
        return backoff_turn([float(o.value) for o in self.history if o.ok], WARM_JUDGE_ASKS, WARM_QUANTILE)

    def _propose(self, rng: np.random.Generator, gen: torch.Generator, taken: set[str]) -> Genotype:
        if isinstance(self.policy, PreferencePolicy):
            return self._propose_preference(rng, gen, taken)
        last: Genotype | None = None
        drawn = 0
        while drawn < self.resample:
            # a small first round (usually enough), then the rest at once (one pass per decision)
            size = self.sample_batch if drawn == 0 else self.resample - drawn
            for cursor in self.policy.sample(max(1, min(size, self.resample - drawn)), gen):
                drawn += 1
                if cursor is None or cursor.result is None:
                    continue
                g = cursor.result
                if self.is_new(g, taken):
                    if self.space.contains(g):
                        return g
                elif self.space.contains(g):
                    last = g
        if last is not None:  # the controller has converged: explore around what it likes
            child = last
            for _ in range(20):
                child = self.space.mutate(last if rng.random() < 0.5 else child, rng)
                if self.is_new(child, taken):
                    return child
        return self.fresh_sample(rng, taken)

    def _propose_preference(self, rng: np.random.Generator, gen: torch.Generator, taken: set[str]) -> Genotype:
        options: list[Genotype] = []
        keys = set(taken)
        for _ in range(self.policy.candidates):
            g = self.fresh_sample(rng, keys)
            if not self.is_new(g, keys):
                break
            keys.add(g.key)
            options.append(g)
        if not options:
            return self.fresh_sample(rng, taken)
        return options[self.policy.choose(options, gen)]
