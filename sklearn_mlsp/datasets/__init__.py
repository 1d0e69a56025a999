"""Loaders for image aesthetics and quality datasets that are already on disk.

In the style of :mod:`sklearn.datasets`, each loader returns a
:class:`sklearn.utils.Bunch`; nothing is downloaded. The loaders read the
labels, build the image paths and check that the images can be opened.
Images that cannot be used are left out, never silently: they are listed in
``bunch.missing`` and counted in a warning.

- :func:`load_ava` -- AVA (Murray et al., CVPR 2012), with the official test
  split used by Hosu et al. (CVPR 2019).
- :func:`load_csv_dataset` -- a label file with one image name and one score
  per row (KonIQ-10k, SPAQ, BIQ2021 and similar).
- :func:`load_clive` -- LIVE In the Wild Image Quality Challenge (CLIVE).
- :func:`load_koniq10k`, :func:`load_spaq`, :func:`load_kadid10k` and
  :func:`load_paq2piq` -- KonIQ-10k, SPAQ, KADID-10k and PaQ-2-PiQ, each from
  the label file of its release as distributed.

One module per release family (``ava``, ``generic``, ``clive``, ``koniq``,
``spaq``, ``kadid``, ``paq2piq``). Every loader ends the same way
(``_common._check_and_report``, then ``_common._bunch``); ``_label_files`` is
the one reader of label files they share, and a dataset released as one label
file plus an image folder is one ``_release._LabelFileDataset`` description
and a one-line loader.
"""

from .ava import load_ava
from .clive import load_clive
from .generic import load_csv_dataset
from .kadid import load_kadid10k
from .koniq import load_koniq10k
from .paq2piq import load_paq2piq
from .spaq import load_spaq

__all__ = [
    "load_ava",
    "load_clive",
    "load_csv_dataset",
    "load_kadid10k",
    "load_koniq10k",
    "load_paq2piq",
    "load_spaq",
]
