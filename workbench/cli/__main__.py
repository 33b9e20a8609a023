"""``python -m workbench.cli``: the same as the ``nasw`` command."""

from workbench.cli import main

main()
