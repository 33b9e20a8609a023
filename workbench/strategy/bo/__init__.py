"""Bayesian optimisation (``bo``): the only package that imports botorch and gpytorch.

Cold BO:

* :mod:`.model`: the exact GP over encodings and its fast, deterministic hyperparameter fit;
* :mod:`.acquisition`: LogEI over whole pools, greedy qLogNEI / qLogNEHVI batches, and LogEI
  under a warm-start model (:func:`~.acquisition.top_log_ei_rows`);
* :mod:`.pool`: candidate pools (a tabular space's whole pool, or samples plus mutations);
* :mod:`.strategy`: :class:`~workbench.strategy.bo.strategy.BayesianOptimization`.

Warm-started BO (``sources``: other tasks' histories in the same space), in import order:

* :mod:`.pool_kernel`: kernel sums and variance bounds that score a whole candidate pool;
* :mod:`.sources`: warm sources made into model data (features, transformed values, thinning);
* :mod:`.transfer_model`: the :class:`~.transfer_model.TransferModel` protocol the models share;
* :mod:`.rgpe`: RGPE, the ranking-weighted ensemble of per-task GPs (the default);
* :mod:`.mtgp_fit` and :mod:`.mtgp`: the fast ICM multi-task GP and its once-per-search fit;
* :mod:`.transfer`: the proposer that asks a model for candidates, and the
  :class:`~.transfer.TransferContext` through which the strategy describes itself to it.

Nothing heavy is imported here; the registry loads :mod:`.strategy` when ``bo`` is asked for.
"""

from __future__ import annotations
