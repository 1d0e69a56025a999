"""The whole method as one Pipeline: transformer + head, in GridSearchCV, pickled."""

import pickle

import joblib
import numpy as np
import pytest
from helpers import tiny_transformer, write_images
from joblib import parallel_backend
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline

from sklearn_mlsp import (
    FeatureView,
    Multi3FCRegressor,
    Pool3FCRegressor,
    Single3FCRegressor,
)
from sklearn_mlsp.metrics import get_scorers, srcc_scorer

TINY_3FC = {"module__hidden": (8, 4), "max_epochs": 3, "batch_size": 8, "random_state": 0}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("img")
    paths = write_images(folder, 16, 40, 48)
    y = np.linspace(1, 5, len(paths))
    return paths, y


def test_pipeline_with_cache_fits_predicts_and_pickles(photos, tmp_path):
    paths, y = photos
    pipe = make_pipeline(
        tiny_transformer(pooling="wide", augment=True, cache=tmp_path / "f.h5"),
        Pool3FCRegressor(module__width=8, **TINY_3FC),
    )
    pipe.fit(paths, y)
    pred = pipe.predict(paths)
    assert pred.shape == (16,) and np.isfinite(pred).all()
    assert isinstance(pipe[0].transform(paths), FeatureView)
    for restored in (pickle.loads(pickle.dumps(pipe)), _joblib_roundtrip(pipe, tmp_path)):
        np.testing.assert_allclose(restored.predict(paths), pred, rtol=1e-5)


def _joblib_roundtrip(obj, tmp_path):
    joblib.dump(obj, tmp_path / "model.joblib")
    return joblib.load(tmp_path / "model.joblib")


def test_multi3fc_gets_tap_boundaries_from_the_transformer(photos):
    paths, y = photos
    pipe = make_pipeline(tiny_transformer(), Multi3FCRegressor(**TINY_3FC)).fit(paths, y)
    assert tuple(pipe[1].tap_channels_) == pipe[0].tap_channels_
    with pytest.raises(ValueError, match="tap_channels"):
        Multi3FCRegressor(**TINY_3FC).fit(np.asarray(pipe[0].transform(paths)), y)


def test_grid_search_extracts_each_image_once(photos, tmp_path, backbone_loads):
    paths, y = photos
    pipe = make_pipeline(
        tiny_transformer(cache=tmp_path / "f.h5"),
        Single3FCRegressor(**TINY_3FC),
    )
    pipe[0].fit().transform(paths)  # warm the cache once
    assert len(backbone_loads) == 1
    grid = GridSearchCV(
        pipe,
        {
            "single3fcregressor__lr": [1e-3, 1e-2],
            "single3fcregressor__module__dropout": [(0.1, 0.1, 0.1), (0.5, 0.5, 0.5)],
        },
        cv=KFold(2), scoring=get_scorers(score_range=(1, 5)), refit="srcc", n_jobs=2,
    )
    with parallel_backend("threading", n_jobs=2):  # threads share the load counter
        grid.fit(paths, y)
    assert len(backbone_loads) == 1  # 8 fits, 16 scorings: no backbone
    assert set(grid.cv_results_) >= {"mean_test_srcc", "mean_test_plcc"}
    # Process-based workers (the default backend) give the same search results.
    grid_loky = GridSearchCV(pipe, {"single3fcregressor__lr": [1e-3, 1e-2]}, cv=KFold(2),
                             scoring=srcc_scorer, n_jobs=2).fit(paths, y)
    assert np.isfinite(grid_loky.cv_results_["mean_test_score"]).all()


def test_cross_val_score_on_lazy_features(photos, tmp_path):
    paths, y = photos
    view = tiny_transformer(cache=tmp_path / "f.h5", augment=True).fit().transform(paths)
    scores = cross_val_score(Single3FCRegressor(**TINY_3FC), view, y, cv=KFold(2), scoring=srcc_scorer)
    assert scores.shape == (2,) and np.isfinite(scores).all()
