"""The loaders' docstrings: the entries every loader shares are written once, and filled in everywhere."""

import inspect
import re

import pytest
from numpydoc.docscrape import FunctionDoc

from sklearn_mlsp import datasets
from sklearn_mlsp.datasets._common import _SHARED_DOCS


def _entries(doc, section):
    return {p.name: " ".join(p.desc) for p in doc[section]}


def _shared(key):
    """The description of a shared entry, as numpydoc reads it."""
    return " ".join(line.strip() for line in _SHARED_DOCS[key].splitlines()[1:])


@pytest.mark.parametrize("name", datasets.__all__)
def test_each_loader_documents_its_parameters_and_the_shared_entries_in_one_wording(name):
    loader = getattr(datasets, name)
    assert not re.search(r"(?<!`)\{[a-z_A-Z]+\}", loader.__doc__), "a shared entry was not filled in"
    doc = FunctionDoc(loader)
    params = _entries(doc, "Parameters")
    assert list(params) == list(inspect.signature(loader).parameters)
    assert params["return_X_y"] == _shared("return_X_y")
    returns = _entries(doc, "Returns")
    assert list(returns) == ["data", "(data, target)"]
    assert returns["(data, target)"] == _shared("X_y")
    before_order, after_order = _shared("bunch").split("{order}")
    assert returns["data"].startswith(before_order)
    assert after_order.lstrip(". ") in returns["data"]  # the renamed fields
