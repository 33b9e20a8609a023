"""What ``--budget N`` means, decided once when a search is built."""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import UserError


@dataclass(frozen=True)
class Budget:
    """A search's budget.

    Without a scheduler it counts trials (finished and failed). Under a multi-fidelity
    scheduler it counts full-training equivalents: the scheduler decides how many (cheaper)
    trials that buys (:meth:`workbench.evaluate.schedulers.Scheduler.expected_trials`).
    Strategies see the number itself (:class:`workbench.strategy.base.StrategySetup`), e.g.
    a hill climb spends half of it on random starts. A resumed search keeps its recorded
    budget unless ``nasw resume --budget`` gives a new one.

    Attributes:
        amount: N.
        scheduled: True when N counts full-training equivalents (a scheduler runs the search).
    """

    amount: int
    scheduled: bool = False

    @classmethod
    def of(cls, value: object, *, scheduled: bool = False) -> Budget:
        """Parse ``--budget``.

        Raises:
            UserError: Not a positive whole number.
        """
        try:
            amount = int(value)  # type: ignore[call-overload]
            ok = amount == value or isinstance(value, str)
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok or amount < 1:
            raise UserError(f"budget must be a positive number of trials, got {value}")
        return cls(amount, scheduled)

    @property
    def unit(self) -> str:
        """What the amount counts."""
        return "full trainings" if self.scheduled else "trials"

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}"
