"""Bayesian optimisation (``bo``): the only package that imports botorch and gpytorch.

* :mod:`.model`: the exact GP over encodings and its fast, deterministic hyperparameter fit;
* :mod:`.acquisition`: LogEI over whole pools, greedy qLogNEI / qLogNEHVI batches;
* :mod:`.pool`: candidate pools (a tabular space's whole pool, or samples plus mutations);
* :mod:`.strategy`: :class:`~workbench.strategy.bo.strategy.BayesianOptimization`.

Nothing heavy is imported here; the registry loads :mod:`.strategy` when ``bo`` is asked for.
"""

from __future__ import annotations
