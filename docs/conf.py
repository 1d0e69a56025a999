"""Sphinx configuration of sklearn-mlsp.

The build is offline and fast: no intersphinx, and the example gallery is
rendered from the scripts' text without running them (``plot_gallery=False``).
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sklearn_mlsp

project = "sklearn-mlsp"
author = "sklearn-mlsp developers"
copyright = "sklearn-mlsp developers"
release = sklearn_mlsp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# -- autodoc / autosummary / numpydoc -------------------------------------------------
templates_path = ["_templates"]
autosummary_generate = True
autodoc_default_options = {}  # members are chosen in _templates/autosummary/class.rst
autodoc_typehints = "none"
numpydoc_show_class_members = False  # autosummary pages list members themselves
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# -- gallery ---------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Render every script, execute none: the docs build must be fast and offline.
    "filename_pattern": r"(?!x)x",  # matches nothing
    "plot_gallery": "False",
    "download_all_examples": False,
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "show_memory": False,
}

# -- HTML ------------------------------------------------------------------------------
html_theme = "alabaster"
html_static_path = []
html_theme_options = {
    "description": "MLSP features (Hosu et al., CVPR 2019) as scikit-learn estimators",
    "fixed_sidebar": False,
}

# No network during builds.
intersphinx_mapping = {}

# -- benchmarks/RESULTS.md -------------------------------------------------------------
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def _add_results(app, docname, source):
    """Append benchmarks/RESULTS.md (as plain text) to the benchmarks page, if present."""
    if docname != "benchmarks":
        return
    if RESULTS.is_file():
        text = (
            "\n\nThe file as recorded\n--------------------\n\n"
            ".. literalinclude:: ../benchmarks/RESULTS.md\n"
            "   :language: none\n"
        )
    else:
        text = (
            "\n\n.. note::\n\n"
            "   ``benchmarks/RESULTS.md`` is not present in this checkout; run the scripts\n"
            "   in ``benchmarks/`` to produce the figures.\n"
        )
    source[0] += text


def setup(app):
    app.connect("source-read", _add_results)
