"""The ``mlsp`` group: its commands, one module each, and the console entry point."""

from __future__ import annotations

import click

from ..allocator import keep_freed_memory
from . import _running
from .cache import cache
from .evaluate import evaluate
from .extract import extract
from .fit import fit
from .info import info, models
from .score import score


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sklearn-mlsp", prog_name="mlsp")
def cli():
    """Predict how people rate photographs with MLSP features (Hosu et al., CVPR 2019).

    \b
    A typical session:
      mlsp fit labels.csv --images photos/ --model quality.mlsp --cache features.h5 --cv 5
      mlsp score photos/                      # the shipped quality model, no training
      mlsp score --model quality.mlsp new_photos/ --out scores.csv --top 50 --sheet sheet.png
      mlsp evaluate quality.mlsp test.csv --images photos/ --plot scatter.png

    Exit codes: 0 success, 1 some images failed, 2 usage or input error.
    """


for command in (extract, fit, score, evaluate, models, info, cache):
    cli.add_command(command)


def main(argv=None):
    """Entry point of the ``mlsp`` console script."""
    _running._EXIT_AT_ONCE = True
    keep_freed_memory()  # our own process: activations stay mapped between images
    return cli.main(args=argv, prog_name="mlsp")
