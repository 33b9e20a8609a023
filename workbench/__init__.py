"""nasw: a research workbench for neural architecture search that learns across tasks.

Nothing heavy is imported here, so ``import workbench`` and ``nasw --help`` stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
