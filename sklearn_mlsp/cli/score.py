"""``mlsp score``: score images with a shipped model or a model file, and rank them."""

from __future__ import annotations

import os
import time

import click

from ._curation import (
    _check_curation,
    _check_listable,
    _check_lists_are_ours,
    _curate,
    _curating,
    _curation_options,
)
from ._models import _model, _model_file, _predict, _pyplot, _report_failures
from ._options import (
    _FORMAT_OPTION,
    _cache_path,
    _looks_like_model,
    _not_nan,
    _parallel_options,
    _rows_format,
    _write_rows,
    collect_images,
)
from ._running import InputError, _run, _write, check_output_path, check_outputs_spare_inputs


def contact_sheet(frame, path, n_show=6, title=None):
    """Save thumbnails of the best and worst images with their scores, and a histogram.

    Parameters
    ----------
    frame : pandas.DataFrame
        Columns ``path``, ``score`` and ``rank``, sorted by score (best first);
        rows with a NaN score are left out.
    path : str
        PNG file to write.
    n_show : int, default=6
        Thumbnails per row (best row, worst row).
    title : str, optional
    """
    import numpy as np
    from PIL import Image, ImageOps

    plt = _pyplot()
    scored = frame[frame["score"].notna()]
    n = min(n_show, max(1, (len(scored) + 1) // 2))
    best, worst = scored.head(n), scored.tail(n).iloc[::-1] if len(scored) > n else scored.iloc[0:0]
    rows = 3 if len(worst) else 2
    fig = plt.figure(figsize=(1.9 * n + 0.4, 2.3 * (rows - 1) + 2.0))
    grid = fig.add_gridspec(rows, n, height_ratios=[1.15] * (rows - 1) + [1.0])
    for r, (label, part) in enumerate([("best", best), ("worst", worst)][: rows - 1]):
        for c in range(n):
            ax = fig.add_subplot(grid[r, c])
            ax.axis("off")
            if c >= len(part):
                continue
            row = part.iloc[c]
            try:
                with Image.open(row["path"]) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
                    im.thumbnail((256, 256))
                    ax.imshow(np.asarray(im))
            except OSError:
                pass
            name = os.path.basename(str(row["path"]))
            name = name if len(name) <= 22 else "..." + name[-19:]
            # parse_math=False: a file name such as "$\frac$.jpg" is text, not mathtext to fail on.
            ax.set_title(f"{label} #{int(row['rank'])}: {row['score']:.3f}\n{name}", fontsize=7, parse_math=False)
    ax = fig.add_subplot(grid[rows - 1, :])
    ax.hist(scored["score"], bins=min(40, max(5, len(scored) // 5)), color="#4477aa")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("images")
    ax.set_title(f"all {len(scored)} scores", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9, parse_math=False)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "model_name", default=None, metavar="NAME|FILE",
              help="A shipped model (see `mlsp models`) or a model file. Default: the shipped default model. "
                   "(`mlsp score MODEL.mlsp IMAGES...` works too.)")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False), default=None,
              help="File for every image: path, score, std, low, high, rank, error, model, scale; best first.")
@_FORMAT_OPTION
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True, help="Print the best N.")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="PNG contact sheet: best and worst images with scores, and a histogram.")
@click.option("--scale", type=click.Choice(["0-1", "0-100"]), default=None,
              help="Scale of the scores for models that support it (the shipped ones: their data's MOS, 0-1, "
                   "or that times 100). Default: the model's own.")
@click.option("--coverage", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.9,
              show_default=True, callback=_not_nan, help="Coverage of the low-high intervals (models with intervals).")
@click.option("--cache", type=click.Path(), default=None, callback=_cache_path, help="Feature cache folder (reused).")
@click.option("--device", default="auto", show_default=True, help="auto (the model's), cpu, cuda, ...")
@_parallel_options
@click.option("-r", "--recursive", is_flag=True, help="Also take images in subfolders.")
@click.option("--errors", type=click.Choice(["nan", "raise"]), default="nan", show_default=True,
              help="nan: unreadable images get no score and exit code 1; raise: stop at the first. "
                   "The API's errors= defaults to raise; a command run over a folder carries on.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Refuse images larger than this many pixels (decompression-bomb guard; default "
                   "64000000). The model file's own limit is never used.")
@_curation_options
@_run
def score(out, images, model_name, out_csv, row_format, top, sheet, scale, coverage, cache, device, n_decoders,
          n_jobs, recursive, errors, max_pixels, curation):
    """Score IMAGES (files, folders, .txt lists of paths) and rank them, best first.

    With no --model, the shipped default model scores them (technical quality, BIQ2021's MOS on 0-1,
    higher is better; `mlsp info biq2021-lite0` prints its card). Each image gets a score, its spread
    (std) and a calibrated interval (low-high) where the model has one.

    \b
    Examples:
      mlsp score photos/
      mlsp score photos/ --out scores.csv --top 50 --sheet sheet.png --scale 0-100
      mlsp score --model quality.mlsp photos/
    """
    import numpy as np
    import pandas as pd

    from ..model_io import read_model_metadata

    start = time.perf_counter()
    if model_name is None and len(images) >= 2 and _looks_like_model(images[0]):
        model_name, images = images[0], images[1:]  # the older form: mlsp score MODEL IMAGES...
    check_output_path(out_csv, "--out")
    row_format = _rows_format(out, row_format, out_csv)
    check_output_path(sheet, "--sheet")
    _check_curation(curation, out_csv)
    if sheet:
        _pyplot()  # fail before the work if matplotlib is missing
    outputs = [("--out", out_csv), ("--sheet", sheet), ("--report", curation["report"])]
    if _curating(curation):
        outputs += [("--lists", os.path.join(curation["lists"], f"{name}.txt")) for name in ("kept", "rejected")]
    # A rerun over the folder the outputs went to must not score them (the report's thumbnails, the sheet).
    own = [path for _, path in outputs]
    if curation["report"]:
        from ..report import thumbnails_folder

        own.append(thumbnails_folder(curation["report"]))
    paths = collect_images(images, recursive, exclude=own)
    model_path = _model_file(model_name)
    check_outputs_spare_inputs(outputs, [*paths, *(i for i in images if os.path.isfile(i)), model_path])
    _check_lists_are_ours(curation)
    if _curating(curation):
        _check_listable(paths)
    try:
        meta = read_model_metadata(model_path)
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None
    model = _model(out, model_path, cache, device)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    scale_name = meta.get("score_scale") or "as trained (range {})".format(meta.get("target_range"))
    if scale is not None and scale != meta.get("score_scale"):
        if "output_scale" not in final.get_params(deep=False) or meta.get("score_scale") != "0-1":
            raise InputError(f"--scale {scale}: {model_path} gives scores on {scale_name} and cannot rescale them; "
                             "leave --scale out.")
        final.set_params(output_scale={"0-1": 1.0, "0-100": 100.0}[scale])
        scale_name = scale
    if hasattr(final, "predict_interval"):
        final.set_params(coverage=coverage)
    higher_is_better = bool(meta.get("higher_is_better", True))
    # The report's maps and the scores from one backbone pass (wide features; the narrow ones their mean).
    with_maps = curation["report"] and hasattr(final, "predict_map") and len(getattr(model, "steps", ())) == 2
    maps_grid = 5 if with_maps else None
    columns, failures, stats, features = _predict(model, paths, out, errors=errors, n_decoders=n_decoders,
                                                  n_jobs=n_jobs, spread=True, max_pixels=max_pixels,
                                                  with_features=True, maps_grid=maps_grid)
    maps = columns.pop("maps", None)
    frame = pd.DataFrame({"path": paths, **columns, "position": np.arange(len(paths))})
    frame["error"] = ""
    for f in failures:
        frame.loc[f["position"], "error"] = f["error"]
    frame = frame.sort_values("score", ascending=not higher_is_better, na_position="last", kind="stable",
                              ignore_index=True)
    n_ok = int(frame["score"].notna().sum())
    frame["rank"] = pd.array(list(range(1, n_ok + 1)) + [pd.NA] * (len(frame) - n_ok), dtype="Int64")
    model_label = meta.get("name") or os.path.basename(model_path)
    frame["model"] = model_label
    frame["scale"] = scale_name
    positions = frame["position"].to_numpy()  # where each row's image is in `features`
    frame = frame[["path", "score", "std", "low", "high", "rank", "error", "model", "scale"]]
    if row_format:
        _write_rows(frame, row_format, out_csv)
    _report_failures(out, failures, len(paths))
    has_interval = bool(frame["low"].notna().any())
    if top and n_ok:
        shown = frame.head(min(top, n_ok))
        width = max(6, *(len(p) for p in shown["path"]))
        interval = f"  {int(round(coverage * 100))} % interval" if has_interval else ""
        out.say(f"model {model_label}, scores on {scale_name}, {'higher' if higher_is_better else 'lower'} is better")
        out.say(f"{'rank':>5}  {'score':>8}{interval:>18}  path")
        for r in shown.itertuples(index=False):
            iv = f"  [{r.low:7.3f}, {r.high:7.3f}]" if has_interval else ""
            out.say(f"{int(r.rank):>5}  {r.score:>8.4f}{iv}  {r.path:<{width}}".rstrip())
    if sheet:
        title = f"{model_label}: {n_ok} images, {'higher' if higher_is_better else 'lower'} is better"
        _write(sheet, "--sheet", lambda: contact_sheet(frame, sheet, title=title))
    curated = _curate(out, curation, None if maps is None else [maps[p] for p in positions], frame, features,
                      positions, higher_is_better, title=f"{model_label}: {len(paths)} photographs",
                      notes=f"scores on {scale_name}")
    seconds = time.perf_counter() - start
    out.say(f"{n_ok} of {len(paths)} images scored ({stats['cached']} cached, {stats['computed']} computed, "
            f"{len(failures)} failed) in {seconds:.1f} s"
            + (f"; scores written to {out_csv}" if out_csv else "")
            + (f"; contact sheet {sheet}" if sheet else ""))
    top_rows = frame.head(min(top, n_ok))

    def number(value):
        return None if pd.isna(value) else float(value)

    out.summary({
        "ok": not failures, "model": model_path, "model_name": model_label, "scale": scale_name,
        "higher_is_better": higher_is_better, "images": len(paths), "scored": n_ok, "failed": len(failures),
        "cached": stats["cached"], "computed": stats["computed"], "out": out_csv, "sheet": sheet,
        "seconds": seconds, "failures": failures, **curated,
        "top": [{"rank": int(r.rank), "score": float(r.score), "std": number(r.std), "low": number(r.low),
                 "high": number(r.high), "path": r.path} for r in top_rows.itertuples()],
        "mean_score": float(np.nanmean(frame["score"])) if n_ok else None,
    })  # fmt: skip
    return 1 if failures else 0
