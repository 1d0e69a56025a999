"""``mlsp extract``: MLSP features of images into a feature cache."""

from __future__ import annotations

import click

from ._models import _failures, _report_failures, _transformer
from ._options import _cache_path, _feature_options, _pooling, collect_images
from ._running import ImagesFailed, _run


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--cache", required=True, type=click.Path(), callback=_cache_path,
              help="Feature cache (a store folder) to fill.")
@_feature_options("narrow")
@click.option("-r", "--recursive", is_flag=True, help="Also take images in subfolders.")
@click.option("--errors", type=click.Choice(["nan", "raise"]), default="nan", show_default=True,
              help="nan: carry on past unreadable images (exit code 1); raise: stop at the first. "
                   "The API's errors= defaults to raise; a command run over a folder carries on.")
@_run
def extract(out, images, cache, backbone, scales, pooling, augment, weights, device, n_decoders, n_jobs, recursive,
            errors):
    """Extract MLSP features of IMAGES (files, folders, .txt lists) into a cache.

    Images already in the cache (same content, same configuration) are not
    computed again.

    \b
    Example:
      mlsp extract photos/ --cache features.h5 --backbone efficientnet_lite0 --no-augment
    """
    from ..images import ImageError

    paths = collect_images(images, recursive)
    t = _transformer(out, backbone=backbone, scales=scales, pooling=_pooling(pooling), augment=augment,
                     weights=weights, device=device, n_decoders=n_decoders, n_jobs=n_jobs, cache=cache,
                     errors=errors)
    try:
        t.transform(paths)
    except ImageError as exc:
        raise ImagesFailed(str(exc)) from None
    stats = t.transform_stats_
    failures = _failures(t)
    rate = stats["images"] / stats["seconds"] if stats["seconds"] > 0 else float("nan")  # cached or not
    _report_failures(out, failures, len(paths))
    out.say(
        f"{stats['images']} images: {stats['cached']} cached, {stats['computed']} computed, "
        f"{stats['failed']} failed, {rate:.1f} images/s ({stats['seconds']:.1f} s) -> {cache} "
        f"[{t.config_id_}]"
    )
    out.summary({"ok": not failures, **stats, "images_per_s": rate, "cache": cache,
                 "config_id": t.config_id_, "failures": failures})
    return 1 if failures else 0
