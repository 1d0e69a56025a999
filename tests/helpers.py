"""Small shared builders for the tests (images on disk, tiny transformers)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sklearn_mlsp import MLSPTransformer

#: `mlsp fit` options of a quick model: ridge on random-weight EfficientNet-Lite0 features, one view, on the CPU.
TINY_FIT = ["--backbone", "efficientnet_lite0", "--weights", "random", "--pooling", "narrow", "--no-augment",
            "--n-decoders", "0", "--device", "cpu", "--head", "ridge", "--quiet"]


def random_image(seed: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth random RGB image (smooth, so JPEG keeps it close)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    return np.asarray(img)


def write_images(folder, n: int, height: int = 48, width: int = 64, fmt: str = "png", start: int = 0):
    """Write ``n`` distinct images and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"img_{i:03d}.{fmt}"
        Image.fromarray(random_image(i, height, width)).save(path)
        paths.append(str(path))
    return paths


def tiny_transformer(**params) -> MLSPTransformer:
    """EfficientNet-Lite0 with random weights: the real tap structure, nothing to load."""
    defaults = {"backbone": "efficientnet_lite0", "weights": "random", "pooling": "narrow",
                    "augment": False, "device": "cpu", "verbose": 0, "n_decoders": 0}
    defaults.update(params)
    return MLSPTransformer(**defaults)


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py``, loaded from its file (benchmarks/ is no package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
