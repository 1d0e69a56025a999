"""``mlsp cache``: look after a feature cache (info, drop, compact, verify)."""

from __future__ import annotations

import os

import click

from ._options import _cache_path, _not_an_input
from ._running import InputError, _run


@click.group()
def cache():
    """Look after a feature cache: what is in it, drop, compact, verify.

    \b
    Examples:
      mlsp cache info features.h5
      mlsp cache drop features.h5 cfg_0123456789abcdef
      mlsp cache verify features.h5 --repair
    """


def _store(path):
    from ..store import FeatureStore, LegacyStoreError, NotAFeatureStoreError

    if not os.path.lexists(path):
        raise InputError(f"{path}: no feature cache here.")
    if not os.path.isdir(path) and not os.path.isfile(path):
        raise InputError(f"{path}: not a feature cache; " + _not_an_input(path))
    store = FeatureStore(path)
    try:
        store.configs()
    except (LegacyStoreError, NotAFeatureStoreError) as exc:
        raise InputError(str(exc)) from None
    return store


@cache.command("info")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@_run
def cache_info(out, path):
    """Configurations in a feature cache, with their images, shards and bytes.

    \b
    Example:
      mlsp cache info features.h5
    """
    store = _store(path)
    table = store.summary()
    rows = table.to_dict("records")
    usage = store.usage()
    if not rows:
        out.say(f"{path}: empty (no configuration stored yet)")
    else:
        out.say(f"{'configuration':<22}{'backbone':<22}{'grid':>5}{'views':>6}{'channels':>9}"
                f"{'images':>9}{'shards':>7}{'MB':>10}")
        for r in rows:
            out.say(f"{r['config_id']:<22}{str(r['backbone']):<22}{str(r['grid_size']):>5}{str(r['views']):>6}"
                    f"{str(r['channels']):>9}{r['images']:>9}{r['shards']:>7}{r['bytes'] / 1e6:>10.1f}")
        out.say(f"{'total':<70}{int(table['images'].sum()):>9}{int(table['shards'].sum()):>7}"
                f"{table['bytes'].sum() / 1e6:>10.1f}")
    if usage["tmp_entries"]:
        out.say(f"tmp/: {usage['tmp_entries']} entries, {usage['tmp_bytes'] / 1e6:.1f} MB (leftovers of "
                "writers that died are removed by `mlsp cache compact`)")
    if usage["damaged_entries"]:
        out.say(f"damaged/: {usage['damaged_entries']} entries, {usage['damaged_bytes'] / 1e6:.1f} MB (moved "
                "aside by `mlsp cache verify --repair`; delete them once you have looked)")
    out.summary({"ok": True, "cache": path, "configurations": rows, **usage})
    return 0


@cache.command("drop")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@click.argument("config_id", metavar="CONFIG")
@_run
def cache_drop(out, path, config_id):
    """Delete one configuration (see `mlsp cache info` for the ids) and its features.

    \b
    Example:
      mlsp cache drop features.h5 cfg_0123456789abcdef
    """
    store = _store(path)
    try:
        n = store.drop(config_id)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    out.say(f"dropped {config_id}: {n} images")
    out.summary({"ok": True, "cache": path, "config_id": config_id, "images": n})
    return 0


@cache.command("compact")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@_run
def cache_compact(out, path):
    """Merge a cache's shards, removing duplicates, damaged rows and leftovers of dead writers in tmp/.

    \b
    Example:
      mlsp cache compact features.h5
    """
    store = _store(path)
    result = store.compact()
    for cid, (before, after) in result.items():
        out.say(f"{cid}: {before} shards -> {after}")
    usage = store.usage()
    if usage["tmp_entries"]:
        out.say(f"tmp/: {usage['tmp_entries']} entries left ({usage['tmp_bytes'] / 1e6:.1f} MB), being written now")
    out.summary({"ok": True, "cache": path, "shards": {c: list(v) for c, v in result.items()}, **usage})
    return 0


@cache.command("verify")
@click.argument("path", metavar="CACHE", type=click.Path(), callback=_cache_path)
@click.option("--repair", is_flag=True,
              help="Drop damaged rows (recomputed by the next extraction), move unreadable shards and stray "
                   "entries to damaged/, rebuild damaged bookkeeping files from the shards.")
@_run
def cache_verify(out, path, repair):
    """Check a cache against its shards; exit code 1 if anything is wrong (and not repaired).

    Checked: every checksum, every shard's header and keys, the bookkeeping
    files (store.json, config.json, layout.json) against the shards, and that
    the folders hold only what the store writes (no FIFOs, links, folders
    named *.h5, foreign files).

    \b
    Example:
      mlsp cache verify features.h5 --repair
    """
    report = _store(path).verify(repair=repair)
    labels = {"chunk": "damaged", "shard": "damaged", "stray": "stray", "bookkeeping": "bookkeeping"}
    for r in report.to_dict("records")[:50]:
        if r["kind"] == "chunk":
            out.say(f"damaged: {r['shard']}: image {r['image']} view {r['view']} ({r['problem']})")
        else:
            what = "whole shard: " if r["kind"] == "shard" else ""
            out.say(f"{labels.get(r['kind'], 'damaged')}: {r['shard']}: {what}{r['problem']}")
    if len(report) > 50:
        out.say(f"... and {len(report) - 50} more")
    out.say(f"{path}: " + ("no damage found" if report.empty else
                           f"{len(report)} problems" + (", repaired" if repair else
                                                        " (run with --repair to mend them)")))
    out.summary({"ok": report.empty, "cache": path, "damaged": report.to_dict("records"), "repaired": repair})
    return 0 if report.empty or repair else 1
