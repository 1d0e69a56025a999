"""The figures of docs/report.rst: quality maps on local defects, near-duplicate similarities, report size.

Five parts, each printed as a table (``--parts`` picks some):

- ``onepass``: ``mlsp score`` of the eight photographs (256 pixels) with
  ``--report``, which extracts only the wide ``5 x 5`` features and scores
  their cells' mean, against ``mlsp score`` without it (narrow features):
  the largest differences of the scores, spreads and intervals.
- ``shipped``: the shipped model's ``2 x 2`` quality maps of scikit-image's
  eight sample photographs at 256 pixels (longer side), each with noise, then
  blur, at level 3 of 5 in one of its four quadrants
  (:func:`sklearn_mlsp.synthetic.degrade_quadrant`): how often the degraded
  quadrant's cell is the lowest of the four (chance: 25 %).
- ``head``: the same at 128 pixels for a Single-3FC head on EfficientNet-Lite0
  features, trained on whole photographs of five of the eight (PHOTOS[:5])
  blurred (then, another head, made noisy) at two levels, the quadrant
  degraded at full severity (the protocol of ``tests/test_maps.py``, which
  does noise at 80 pixels); with the eight augmented views and with one.
- ``duplicates``: cosine similarities of the shipped model's narrow features
  (the ones ``mlsp score --group-near-duplicates`` compares) at 256 pixels:
  each photograph with a copy resized to 70 % (Lanczos), with a copy
  recompressed as JPEG at quality 60, and with the seven other photographs.
- ``report``: :func:`sklearn_mlsp.report.write_report` for ``--n-photos``
  rows with synthetic scores, intervals, 5 x 5 maps and near-duplicate groups
  (1 % failed), their thumbnails made from 40 sample-photograph JPEGs of 320
  pixels (so the figure is the report's own work, not the decoding of large
  photos): wall and CPU seconds, and the size of the page and of its
  thumbnail folder.

    PYTHONPATH=. python benchmarks/report_figures.py --n-photos 20000
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PARTS = ("onepass", "shipped", "head", "duplicates", "report")


def pristine_photos(side):
    """The eight sample photographs, longer side ``side``, and their names."""
    from sklearn_mlsp.synthetic import make_degraded_photos

    data = make_degraded_photos(n_levels=1, distortions=("noise",), max_side=side)
    return [im for im, lev in zip(data.images, data.level) if lev == 0], list(data.source_names)


def quadrant_hits(model, photos, distortion, level, n_levels):
    """For each photograph and quadrant: is the degraded quadrant's cell the lowest of its ``2 x 2`` map?"""
    from sklearn_mlsp.synthetic import degrade_quadrant

    images = [degrade_quadrant(p, q, distortion, level, n_levels, random_state=0) for p in photos for q in range(4)]
    cells = model.predict_map(images, grid=2).reshape(len(images), 4)
    quadrants = np.tile(np.arange(4), len(photos))
    return np.array([cells[i, q] < np.delete(cells[i], q).min() for i, q in enumerate(quadrants)])


def share(hits) -> str:
    return f"{100 * np.mean(hits):.0f} % ({int(np.sum(hits))} of {len(hits)})"


def part_shipped(rows):
    from sklearn_mlsp.pretrained import load_pretrained

    model = load_pretrained(device="cpu")
    model.steps[0][1].set_params(n_decoders=0, verbose=0)
    photos, _ = pristine_photos(256)
    for distortion in ("noise", "blur"):
        hits = quadrant_hits(model, photos, distortion, 3, 5)
        rows.append(("shipped model, 256 px", f"{distortion} 3 of 5 in one quadrant", "lowest cell",
                     share(hits)))


def part_head(rows):
    from sklearn_mlsp import MLSPPipeline, MLSPTransformer, Single3FCRegressor
    from sklearn_mlsp.synthetic import PHOTOS, make_degraded_photos

    side = 128
    photos, names = pristine_photos(side)
    held_out = np.repeat([name not in PHOTOS[:5] for name in names], 4)
    for augment, label in ((True, "8 views"), (False, "1 view")):
        for distortion in ("blur", "noise"):
            train = make_degraded_photos(n_levels=2, distortions=(distortion,), max_side=side, sources=PHOTOS[:5])
            model = MLSPPipeline([
                ("features", MLSPTransformer(backbone="efficientnet_lite0", pooling="narrow", augment=augment,
                                             device="cpu", verbose=0, n_decoders=0)),
                ("head", Single3FCRegressor(module__hidden=(64,), lr=1e-3, batch_size=16, max_epochs=60,
                                            standardize=True, valid_fraction=None, callbacks__schedule=None,
                                            device="cpu", random_state=0)),
            ]).fit(train.images, train.target)
            hits = quadrant_hits(model, photos, distortion, 1, 1)
            rows.append((f"Single-3FC, 128 px, {label}", f"{distortion} 1 of 1 in one quadrant", "lowest cell",
                         f"{share(hits)}; held-out photos {share(hits[held_out])}"))


def part_duplicates(rows):
    from PIL import Image
    from sklearn.base import clone
    from sklearn.metrics.pairwise import cosine_similarity

    from sklearn_mlsp.pretrained import load_pretrained

    photos, _ = pristine_photos(256)
    resized, recompressed = [], []
    for photo in photos:
        im = Image.fromarray(photo)
        resized.append(np.asarray(im.resize((im.width * 7 // 10, im.height * 7 // 10), Image.LANCZOS)))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=60)
        recompressed.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    # Views averaged and flattened: the vectors --group-near-duplicates compares.
    features = clone(load_pretrained(device="cpu").steps[0][1]).set_params(output="flat", n_decoders=0).fit()
    n = len(photos)
    sim = cosine_similarity(features.transform(photos + resized + recompressed))
    pairs = {"resized to 70 %": np.diag(sim[:n, n:2 * n]), "JPEG quality 60": np.diag(sim[:n, 2 * n:]),
             "two different photos": sim[:n, :n][~np.eye(n, dtype=bool)]}
    for label, values in pairs.items():
        rows.append(("shipped model, 256 px", f"cosine similarity, {label}", "min - max",
                     f"{values.min():.2f} - {values.max():.2f} ({len(values)} pairs)"))


def part_onepass(rows):
    """``mlsp score`` of the eight photographs with ``--report`` (wide features only) and without (narrow)."""
    import json

    from click.testing import CliRunner
    from PIL import Image

    from sklearn_mlsp.cli import cli

    photos, names = pristine_photos(256)
    with tempfile.TemporaryDirectory() as tmp:
        for photo, name in zip(photos, names):
            Image.fromarray(photo).save(os.path.join(tmp, f"{name}.png"))
        runs = {}
        for label, extra in (("narrow", []), ("report", ["--report", os.path.join(tmp, "out", "r.html")])):
            os.makedirs(os.path.join(tmp, "out"), exist_ok=True)
            args = ["score", tmp, "--device", "cpu", "--n-decoders", "0", "--json", "--quiet", *extra]
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 0, result.output
            runs[label] = {t["path"]: t for t in json.loads(result.stdout)["top"]}
    for column in ("score", "std", "low", "high"):
        diff = max(abs(runs["report"][p][column] - t[column]) for p, t in runs["narrow"].items())
        rows.append(("shipped model, 256 px", f"mlsp score --report vs without: {column}", "max abs difference",
                     f"{diff:.1e} (0-1 scale, {len(runs['narrow'])} photos)"))


def part_report(rows, n_photos):
    import pandas as pd
    from PIL import Image

    from sklearn_mlsp.report import write_report
    from sklearn_mlsp.synthetic import make_degraded_photos

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        for i, image in enumerate(make_degraded_photos(n_levels=1, max_side=320).images):
            sources.append(os.path.join(tmp, f"photo_{i:02d}.jpg"))
            Image.fromarray(image).save(sources[-1], quality=90)
        score = rng.uniform(0.2, 0.9, n_photos)
        failed = rng.uniform(size=n_photos) < 0.01
        score[failed] = np.nan
        frame = pd.DataFrame({"path": [sources[i % len(sources)] for i in range(n_photos)], "score": score,
                              "low": score - 0.1, "high": score + 0.1,
                              "error": np.where(failed, "cannot identify image file", "")})
        maps = [None if f else rng.uniform(0.2, 0.9, (5, 5)) for f in failed]
        groups = rng.integers(0, int(n_photos * 0.9) + 1, n_photos)
        page = Path(tmp, "report.html")
        start, cpu = time.perf_counter(), time.process_time()
        write_report(page, frame, maps, groups=groups, threshold=0.6)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        thumbs = sum(f.stat().st_size for f in Path(tmp, "report_files").iterdir())
        rows.append((f"write_report, {n_photos:,} photos", "HTML page; thumbnails folder", "time; sizes",
                     f"{seconds:.1f} s wall, {cpu:.1f} s CPU ({1e3 * cpu / n_photos:.2f} ms a photo); "
                     f"{page.stat().st_size / 1e6:.1f} MB; {thumbs / 1e6:.0f} MB"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--n-photos", type=int, default=20000, help="rows of the report part")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}.")
    import torch

    torch.manual_seed(0)
    rows, started = [], time.perf_counter()
    for part in parts:
        part_start = time.perf_counter()
        if part == "report":
            part_report(rows, args.n_photos)
        else:
            {"shipped": part_shipped, "head": part_head, "duplicates": part_duplicates,
             "onepass": part_onepass}[part](rows)
        print(f"# {part}: {time.perf_counter() - part_start:.0f} s", flush=True)
    print("| setting | case | figure | value |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s in all ({time.process_time():.0f} s CPU); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
