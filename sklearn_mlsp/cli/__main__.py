"""``python -m sklearn_mlsp.cli``: the ``mlsp`` command."""

from .app import main

main()
