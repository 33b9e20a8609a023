"""Searches: build one (:mod:`.assemble`), run it (:mod:`.run`), resume it.

* :mod:`.budget` - what ``--budget`` counts;
* :mod:`.records` - recorded trials as the search reads them back;
* :mod:`.fidelity` - fidelities, schedulers and early stopping of one search;
* :mod:`.progress` - callbacks for a live display and the result;
* :mod:`.run` - :class:`Search`, the ask -> start -> execute -> record -> tell loop;
* :mod:`.assemble` - :func:`new_search` and :func:`resume_search`.
"""

from workbench.search.assemble import make_executor, new_search, price_genotypes, resume_search
from workbench.search.budget import Budget
from workbench.search.progress import Progress, SearchResult
from workbench.search.records import fidelity_of, is_full, observation_of, usable_record
from workbench.search.run import Search

__all__ = [
    "Budget",
    "Progress",
    "Search",
    "SearchResult",
    "fidelity_of",
    "is_full",
    "make_executor",
    "new_search",
    "observation_of",
    "price_genotypes",
    "resume_search",
    "usable_record",
]
