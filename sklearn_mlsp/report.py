"""An HTML report of scored photographs: one static page to look at and pick from.

:func:`write_report` writes ``report.html`` and, beside it, a folder
``report_files/`` of JPEG thumbnails (loaded lazily by the browser, so a page
of thousands of photographs stays responsive). The page needs no server and
no network: open it from disk. It shows

- the photographs sorted by score (best first), each with its score, its
  interval where the model gives one, and the reason for images that could
  not be read;
- each photograph's quality map (:mod:`sklearn_mlsp.maps`) as an overlay that
  can be switched off: red where the photograph's cells score lowest, green
  where they score highest, relative to that photograph's own cells;
- a histogram of the scores;
- a threshold slider and a keep-top-N field that mark photographs as kept or
  rejected (only the best of a group of near-duplicates is kept), and a
  button that saves the kept paths as ``kept.txt``.

The page is plain HTML, CSS and a little JavaScript from the template
``report_template.html`` (package data); there is no build step.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np

__all__ = ["write_report"]

#: Longer side of the thumbnails, in pixels.
THUMBNAIL_SIDE = 320

#: Colours of a quality map's lowest and highest cells (RGB).
_LOW, _HIGH = np.array([215, 48, 39]), np.array([26, 152, 80])


def _number(value) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _map_png(cells) -> str:
    """A quality map as a ``k x k`` PNG data URI: each photograph's lowest cell red, its highest green."""
    from PIL import Image

    cells = np.asarray(cells, dtype=np.float64)
    span = np.ptp(cells)
    t = (cells - cells.min()) / span if span > 0 else np.full(cells.shape, 0.5)
    rgb = (_LOW + t[..., None] * (_HIGH - _LOW)).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnail(path, target) -> bool:
    """Write a JPEG thumbnail of image ``path`` to ``target``; False when it cannot be read."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft("RGB", (2 * THUMBNAIL_SIDE, 2 * THUMBNAIL_SIDE))  # JPEG: decode at a reduced size
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            im.save(target, format="JPEG", quality=82)
        return True
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _histogram(scores, n_bins, width=640, height=120) -> str:
    """An SVG histogram of ``scores``; each bar carries its score range for the page's script."""
    if not len(scores):
        return '<svg id="histogram" width="0" height="0"></svg>'
    lo, hi = float(np.min(scores)), float(np.max(scores))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(scores, bins=n_bins, range=(lo, hi))
    bar = width / n_bins
    top = max(1, int(counts.max()))
    rects = []
    for i, count in enumerate(counts):
        h = (height - 20) * count / top
        rects.append(
            f'<rect class="bar" x="{i * bar:.2f}" y="{height - 20 - h:.2f}" width="{max(bar - 1, 1):.2f}" '
            f'height="{h:.2f}" data-lo="{edges[i]:.6g}" data-hi="{edges[i + 1]:.6g}">'
            f"<title>{count} photos, {_number(edges[i])} to {_number(edges[i + 1])}</title></rect>"
        )
    labels = (
        f'<text x="0" y="{height - 4}">{_number(lo)}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">{_number(hi)}</text>'
    )
    return (
        f'<svg id="histogram" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'data-lo="{lo:.6g}" data-hi="{hi:.6g}" role="img" aria-label="histogram of the scores">'
        + "".join(rects) + labels
        + f'<line id="threshold-line" x1="0" x2="0" y1="0" y2="{height - 20}"></line></svg>'
    )


def _card(rank, row, thumb, cells, group) -> str:
    """One photograph's figure."""
    path = str(row["path"])
    name = html.escape(os.path.basename(path))
    attrs = f'data-path="{html.escape(path)}"'
    error = str(row.get("error") or "")
    score = row["score"]
    if error or not np.isfinite(score):
        reason = html.escape(error or "no score")
        return (f'<figure class="photo failed" {attrs}><div class="frame missing">not scored</div>'
                f'<figcaption><span class="name">{name}</span><span class="error">{reason}</span>'
                "</figcaption></figure>")
    attrs += f' data-score="{float(score)!r}" data-rank="{rank}"'  # exact: the page sorts and keeps by it
    if group is not None:
        attrs += f' data-group="{int(group)}"'
    low, high = row.get("low", math.nan), row.get("high", math.nan)
    interval = (f' <span class="interval">[{_number(low)}, {_number(high)}]</span>'
                if np.isfinite(low) and np.isfinite(high) else "")
    img = (f'<img class="thumb" loading="lazy" src="{html.escape(thumb)}" alt="{name}">' if thumb
           else '<div class="missing">no thumbnail</div>')
    overlay = ""
    if cells is not None and np.all(np.isfinite(cells)):
        k = cells.shape[0]
        r, c = np.unravel_index(np.argmin(cells), cells.shape)
        tip = (f"quality map ({k} x {k}): cells from {_number(cells.min())} (lowest at row {r + 1}, "
               f"column {c + 1}) to {_number(cells.max())}")
        overlay = f'<img class="map" src="{_map_png(cells)}" alt="" title="{html.escape(tip)}">'
    return (f'<figure class="photo" {attrs}><div class="frame">{img}{overlay}</div>'
            f'<figcaption><span class="rank">#{rank}</span> <span class="score">{_number(score)}</span>{interval}'
            f'<span class="name" title="{html.escape(path)}">{name}</span></figcaption></figure>')


def thumbnails_folder(path) -> Path:
    """The folder of the thumbnails of the report ``path``: ``<stem>_files`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + "_files")


def write_report(path, frame, maps=None, *, title="Scored photographs", higher_is_better=True, threshold=None,
                 groups=None, notes=""):
    """Write a static HTML report of scored photographs.

    Parameters
    ----------
    path : str or path-like
        The HTML file to write. Thumbnails go to the folder ``<stem>_files``
        beside it (replaced files, nothing else touched); the page refers to
        them by relative path, so move the two together.
    frame : pandas.DataFrame
        One row per photograph: ``path`` and ``score`` (NaN for images that
        could not be scored), optionally ``low`` / ``high`` (an interval) and
        ``error`` (why an image was not scored).
    maps : sequence of ndarray of shape (k, k) or None, default=None
        Each row's quality map (``None`` or NaN for rows without one), e.g.
        from :meth:`MLSPPipeline.predict_map <sklearn_mlsp.MLSPPipeline.predict_map>`.
    title : str, default="Scored photographs"
        The page's title.
    higher_is_better : bool, default=True
        Sort and keep from the highest score down (False: from the lowest up).
    threshold : float or None, default=None
        The score the page's slider starts at (photos at or beyond it kept);
        None starts with every photograph kept.
    groups : sequence of int or None, default=None
        Near-duplicate group of each row (see :func:`sklearn_mlsp.curation.near_duplicate_groups`),
        shown on the photographs of groups with more than one member; the page keeps only the best of
        each group, as :func:`sklearn_mlsp.curation.select` does.
    notes : str, default=""
        A line of text under the title (e.g. the model and its scale).

    Returns
    -------
    path : pathlib.Path
        The HTML file written.
    """
    path = Path(path)
    files = thumbnails_folder(path)
    files.mkdir(exist_ok=True)
    n = len(frame)
    maps = [None] * n if maps is None else list(maps)
    groups = [None] * n if groups is None else list(groups)
    if len(maps) != n or len(groups) != n:
        raise ValueError(f"maps and groups need one entry per row of frame ({n}); got {len(maps)} and {len(groups)}.")
    scores = np.asarray(frame["score"], dtype=np.float64)
    ok = np.isfinite(scores)
    order = np.argsort(-scores if higher_is_better else scores, kind="stable")
    order = np.concatenate([order[ok[order]], np.flatnonzero(~ok)])
    sizes = {}
    for g in groups:
        if g is not None:
            sizes[g] = sizes.get(g, 0) + 1
    # Decoding is most of the time, and PIL releases the GIL while it decodes: a few threads.
    names = {i: f"{rank:06d}.jpg" for rank, i in enumerate(order, start=1) if ok[i]}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        written = dict(zip(names, pool.map(lambda i: _thumbnail(frame["path"].iloc[i], files / names[i]), names)))
    cards = []
    for rank, i in enumerate(order, start=1):
        row = frame.iloc[i]
        # A URL: a report named "photos #2.html" or "100%.html" must not cut its thumbnails' address.
        thumb = quote(f"{files.name}/{names[i]}") if written.get(i) else None
        cells = None if maps[i] is None else np.asarray(maps[i], dtype=np.float64)
        group = groups[i] if groups[i] is not None and sizes[groups[i]] > 1 else None
        cards.append(_card(rank, row, thumb, cells, group))
    valid = scores[ok]
    lo, hi = (float(valid.min()), float(valid.max())) if len(valid) else (0.0, 1.0)
    start = threshold if threshold is not None else (lo if higher_is_better else hi)
    settings = {"higherIsBetter": bool(higher_is_better), "threshold": float(start), "min": lo, "max": hi}
    template = resources.files("sklearn_mlsp").joinpath("report_template.html").read_text(encoding="utf-8")
    fields = {"title": html.escape(title), "notes": html.escape(notes),
              "summary": f"{int(ok.sum())} of {n} photographs scored"
                         + (f", {n - int(ok.sum())} not" if n > ok.sum() else ""),
              "settings": json.dumps(settings),
              "histogram": _histogram(valid, min(40, max(5, len(valid) // 5))),
              "photos": "\n".join(cards)}
    # One pass: a title or a file name holding "{{photos}}" is text, not a place to fill in.
    page = re.sub(r"\{\{(\w+)\}\}", lambda m: fields[m.group(1)], template)
    path.write_text(page, encoding="utf-8")
    return path
