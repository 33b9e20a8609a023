"""The policies of :mod:`workbench.strategy.rl`: what samples a genotype and scores it.

* :class:`SequencePolicy`: an LSTM over a token codec's decisions (:mod:`workbench.strategy.tokens`),
  one masked softmax head per decision type; samples a genotype one decision at a time.
* :class:`PreferencePolicy`: for spaces without a codec; scores a set of sampled genotypes'
  encodings with a small network and picks one by softmax.

Both are initialised from a ``torch.Generator`` (the global torch RNG is never used) and expose
``prepare`` (teacher-forcing tensors of a genotype) and ``evaluate`` (log-probabilities and
entropies of prepared items, batched) for the controller's policy-gradient update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.errors import InvalidGenotype
from workbench.space.base import SearchSpace
from workbench.space.genotype import Genotype
from workbench.strategy.tokens import Cursor, TokenCodec


def _init_(module: nn.Module, gen: torch.Generator, scale: float, out_scale: float) -> None:
    """Initialise every parameter uniformly in ``±scale`` (``±out_scale`` for ``out.*``)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            s = out_scale if name.startswith("out.") else scale
            p.uniform_(-s, s, generator=gen)


class SequencePolicy(nn.Module):
    """LSTM over a codec's decisions; one masked softmax head per decision type.

    The heads share one output layer over the concatenated vocabularies (rows ``offset[h] ..
    offset[h] + size[h]`` belong to head ``h``); a step's distribution is the softmax over its
    head's allowed rows.
    """

    #: Decision positions with their own embedding (later ones share the last).
    MAX_POSITIONS = 64

    def __init__(self, codec: TokenCodec, hidden: int, gen: torch.Generator, tanh_constant: float) -> None:
        super().__init__()
        self.codec = codec
        sizes = [h.size for h in codec.heads]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.vocab = int(sum(sizes))
        self.start_token = self.vocab
        with torch.device("meta"):  # no default initialisation: the global RNG stays untouched
            self.embed = nn.Embedding(self.vocab + 1, hidden)
            self.head_embed = nn.Embedding(len(sizes), hidden)
            self.pos_embed = nn.Embedding(self.MAX_POSITIONS, hidden)
            self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
            self.out = nn.Linear(hidden, self.vocab)
        self.to_empty(device="cpu")
        _init_(self, gen, 1.0 / math.sqrt(hidden), 0.01)
        self.tanh_constant = float(tanh_constant)
        self._cache: dict[Genotype, dict[str, torch.Tensor]] = {}

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.out(h)
        if self.tanh_constant > 0:
            logits = self.tanh_constant * torch.tanh(logits / self.tanh_constant)
        return logits

    def _global_mask(self, head: int, mask: np.ndarray) -> np.ndarray:
        row = np.zeros(self.vocab, dtype=bool)
        o = int(self.offsets[head])
        row[o : o + len(mask)] = mask
        return row

    def prepare(self, g: Genotype, salt: Any = None) -> dict[str, torch.Tensor]:
        """Teacher-forcing tensors of ``g`` (raises :class:`InvalidGenotype` if it cannot be coded)."""
        item = self._cache.get(g)
        if item is None:
            tokens = self.codec.encode(g)
            steps = self.codec.steps(tokens)
            heads = np.array([s.head for s in steps], dtype=np.int64)
            chosen = self.offsets[heads] + np.asarray(tokens, dtype=np.int64)
            prev = np.concatenate([[self.start_token], chosen[:-1]]).astype(np.int64)
            masks = np.stack([self._global_mask(s.head, s.mask) for s in steps])
            item = {
                "prev": torch.from_numpy(prev),
                "head": torch.from_numpy(heads),
                "chosen": torch.from_numpy(chosen),
                "mask": torch.from_numpy(masks),
            }
            self._cache[g] = item
        return item

    def evaluate(self, items: Sequence[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probability and entropy of each item's decisions (`B`, `B`)."""
        B, T = len(items), max(len(it["prev"]) for it in items)
        prev = torch.zeros(B, T, dtype=torch.long)
        head = torch.zeros(B, T, dtype=torch.long)
        chosen = torch.zeros(B, T, dtype=torch.long)
        mask = torch.ones(B, T, self.vocab, dtype=torch.bool)
        valid = torch.zeros(B, T, dtype=torch.bool)
        for b, it in enumerate(items):
            n = len(it["prev"])
            prev[b, :n], head[b, :n], chosen[b, :n] = it["prev"], it["head"], it["chosen"]
            mask[b, :n] = it["mask"]
            valid[b, :n] = True
        pos = torch.arange(T).clamp(max=self.MAX_POSITIONS - 1).expand(B, T)
        x = self.embed(prev) + self.head_embed(head) + self.pos_embed(pos)
        h, _ = self.lstm(x)
        logits = self._logits(h).masked_fill(~mask, float("-inf"))
        logp_all = torch.log_softmax(logits, dim=-1)
        logp = logp_all.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
        safe = logp_all.masked_fill(~mask, 0.0)
        entropy = -(safe.exp() * safe).sum(-1)
        zero = torch.zeros((), dtype=logp.dtype)
        return torch.where(valid, logp, zero).sum(1), torch.where(valid, entropy, zero).sum(1)

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> list[Cursor | None]:
        """``n`` decision sequences drawn from the policy (None where the codec refused one)."""
        cursors: list[Cursor | None] = [self.codec.start() for _ in range(n)]
        prev = torch.full((n,), self.start_token, dtype=torch.long)
        state = None
        t = 0
        while any(c is not None and not c.done for c in cursors):
            heads_np = np.zeros(n, dtype=np.int64)
            mask_np = np.ones((n, self.vocab), dtype=bool)
            for b, c in enumerate(cursors):
                if c is not None and c.step is not None:
                    heads_np[b] = head = c.step.head
                    o = int(self.offsets[head])
                    mask_np[b] = False
                    mask_np[b, o : o + len(c.step.mask)] = c.step.mask
            heads, mask = torch.from_numpy(heads_np), torch.from_numpy(mask_np)
            pos = torch.full((n,), min(t, self.MAX_POSITIONS - 1), dtype=torch.long)
            x = (self.embed(prev) + self.head_embed(heads) + self.pos_embed(pos)).unsqueeze(1)
            t += 1
            h, state = self.lstm(x, state)
            logits = self._logits(h[:, 0]).masked_fill(~mask, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            picks = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            local = (picks.numpy() - self.offsets[heads_np]).tolist()
            for b, c in enumerate(cursors):
                if c is None or c.step is None:
                    continue
                try:
                    c.advance(local[b])
                except InvalidGenotype:
                    cursors[b] = None
            prev = picks
        return cursors


class PreferencePolicy(nn.Module):
    """Scores genotypes from their encodings; a choice is a softmax over a set of candidates."""

    def __init__(self, space: SearchSpace, hidden: int, gen: torch.Generator, candidates: int, seed: int) -> None:
        super().__init__()
        self.space = space
        self.candidates = int(candidates)
        self.seed = seed
        dim = int(space.encode([space.sample(np.random.default_rng(seed))]).shape[1])
        with torch.device("meta"):
            self.hidden = nn.Linear(dim, hidden)
            self.out = nn.Linear(hidden, 1)
        self.to_empty(device="cpu")
        _init_(self, gen, 1.0 / math.sqrt(max(dim, 1)), 0.01)

    def scores(self, gs: Sequence[Genotype]) -> torch.Tensor:
        x = torch.as_tensor(self.space.encode(list(gs)), dtype=torch.float32)
        return self.out(torch.tanh(self.hidden(x))).squeeze(-1)

    def prepare(self, g: Genotype, salt: Any = None) -> dict[str, Any]:
        """``g`` against ``candidates - 1`` alternatives drawn with a generator seeded by ``salt``."""
        self.space.validate(g)
        rng = np.random.default_rng([self.seed, 0x5EED, *salt])
        return {"set": [g] + [self.space.sample(rng) for _ in range(self.candidates - 1)]}

    def evaluate(self, items: Sequence[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        logps, ents = [], []
        for it in items:
            logp = torch.log_softmax(self.scores(it["set"]), dim=0)
            logps.append(logp[0])
            ents.append(-(logp.exp() * logp).sum())
        return torch.stack(logps), torch.stack(ents)

    @torch.no_grad()
    def choose(self, gs: Sequence[Genotype], gen: torch.Generator) -> int:
        probs = torch.softmax(self.scores(gs), dim=0)
        return int(torch.multinomial(probs, 1, generator=gen))
