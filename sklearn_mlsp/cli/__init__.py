"""The ``mlsp`` command: extract features, fit, score and evaluate from a shell.

Every command has ``--help`` with an example, ``--quiet`` (no progress, no
text; errors still go to stderr) and ``--json`` (one machine-readable summary
on stdout; human-readable text then goes to stderr). Exit codes:

- 0: success;
- 1: the command ran, but some images could not be read (their names and the
  reasons are reported; results for the others are written);
- 2: usage error or unusable input (missing file, bad label file, model file
  refused); the message names the file and the reason;
- 130: interrupted (Ctrl-C); everything computed before is stored.

Torch and the library are imported only inside the commands, so ``mlsp

One module per command (:mod:`.extract`, :mod:`.fit`, :mod:`.score`,
:mod:`.evaluate`, :mod:`.info` with ``models``, :mod:`.cache`), gathered into
the ``mlsp`` group by :mod:`.app`; what they share is in ``_running`` (output,
errors and exit codes), ``_options`` (inputs and options) and ``_models``
(features, models and predictions). Torch and the library are imported only
inside the commands, so ``mlsp --help`` is instant.
"""

from ._running import EXIT_CODES  # noqa: F401 - what each exit code means (docs/cli.rst lists the same)
from .app import cli, main

__all__ = ["cli", "main"]
