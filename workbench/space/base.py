"""The SearchSpace contract shared by every space."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from workbench.errors import InvalidGenotype
from workbench.space.genotype import Genotype

if TYPE_CHECKING:
    from workbench.space.decisions import DecisionView


class SearchSpace(ABC):
    """A set of architectures with sampling, mutation, validation and numeric encodings.

    Contract:
        * ``sample`` returns a genotype that ``validate`` accepts.
        * ``mutate`` returns a valid genotype that differs from its input (one edit).
        * ``canonical`` maps isomorphic genotypes to one string (used by ``Genotype.key``).
        * ``encode`` maps genotypes to a fixed-width float array `n x d` for surrogates.
        * ``describe`` gives a short one-line form for people.
        * Randomness comes only from the ``rng`` argument.

    Attributes:
        name: Versioned space name written into every genotype.
        trainable: True when genotypes build torch modules (``workbench.nn``); False for
            tabular benchmark spaces that are looked up, not trained.
    """

    name: ClassVar[str]
    trainable: ClassVar[bool] = True

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Genotype:
        """Draw a random valid genotype."""

    @abstractmethod
    def mutate(self, g: Genotype, rng: np.random.Generator) -> Genotype:
        """Return a valid genotype one edit away from ``g`` (never equal to ``g``)."""

    @abstractmethod
    def validate(self, g: Genotype) -> None:
        """Raise :class:`InvalidGenotype` saying what is wrong, or return None."""

    @classmethod
    @abstractmethod
    def canonical(cls, g: Genotype) -> str:
        """A string equal for genotypes that compute the same function."""

    encodings: ClassVar[tuple[str, ...]] = ("onehot",)

    @classmethod
    def describe(cls, g: Genotype) -> str:
        """A short one-line form of ``g`` for people (``nasw show``, lineages, reports).

        The default is the spec's compact JSON; spaces with a layout people read at a glance
        override it (``conv3x16 > maxpool > dense64``). Like :meth:`canonical` it needs no
        settings and does not validate: it may raise on a malformed spec, and
        :func:`workbench.space.registry.describe_json` then falls back to the JSON.
        """
        return g.spec

    @abstractmethod
    def encode(self, gs: Sequence[Genotype], encoding: str = "onehot") -> np.ndarray:
        """Numeric encoding `n x d` (float64) for surrogate models.

        ``encoding`` is one of :attr:`encodings` (graph spaces offer ``"onehot"`` adjacency +
        operations and ``"path"``); the width ``d`` is fixed per space instance.
        """

    def settings(self) -> dict[str, Any]:
        """The constructor settings, so the space can be rebuilt from a record."""
        return {}

    def enumerate(self) -> Iterator[Genotype]:
        """Every member of a finite space; infinite or huge spaces raise ``NotImplementedError``."""
        raise NotImplementedError(f"space {self.name!r} is not enumerable")

    def decision_view(self) -> DecisionView | None:
        """This space's genotypes as a fixed list of decisions (:mod:`workbench.space.decisions`:
        what EDA, TPE and crossover work on), None for a space without one. Built once per space."""
        if "_decision_view" not in self.__dict__:
            from workbench.space.decisions import view_for

            self.__dict__["_decision_view"] = view_for(self)
        return self.__dict__["_decision_view"]

    def crossover(self, a: Genotype, b: Genotype, rng: np.random.Generator, kind: str = "uniform") -> Genotype:
        """A child of ``a`` and ``b``: uniform (``kind="uniform"``) or one-point (``"one-point"``)
        crossover of their :meth:`decision_view` values, repaired to a valid genotype in the
        space's own spelling (the settings outside the decisions, e.g. a ``macro``, are ``a``'s).
        Spaces without a decision view override this or raise ``NotImplementedError``."""
        view = self.decision_view()
        if view is None:
            raise NotImplementedError(f"space {self.name!r} offers no decisions to cross over")
        return view.crossover(a, b, rng, kind)

    def check_space(self, g: Genotype) -> None:
        """Raise unless ``g`` names this space."""
        if not isinstance(g, Genotype):
            raise InvalidGenotype(f"expected a Genotype, got {type(g).__name__}")
        if g.space != self.name:
            raise InvalidGenotype(f"genotype belongs to space {g.space!r}, expected {self.name!r}")

    def contains(self, g: Genotype) -> bool:
        """True when ``validate`` accepts ``g``."""
        try:
            self.validate(g)
        except InvalidGenotype:
            return False
        return True
