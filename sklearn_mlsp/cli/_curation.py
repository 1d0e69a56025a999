"""`mlsp score`'s HTML report and curation: --report, --keep-top, --min-score, --group-near-duplicates."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import click

from ._options import _not_nan
from ._running import InputError, OutputError, _write, check_output_path


def _curation_options(f):
    """``mlsp score``'s options for the HTML report and the kept / rejected lists, gathered in ``curation``."""
    options = [
        click.option("--report", type=click.Path(dir_okay=False), default=None,
                     help="HTML report: photos by score with quality maps, histogram, threshold; thumbnails "
                          "beside it (report.html: report_files/)."),
        click.option("--keep-top", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="FRACTION",
                     callback=_not_nan,
                     help="Keep the best FRACTION (e.g. 0.2) of the photos: writes kept.txt and rejected.txt."),
        click.option("--min-score", type=float, default=None, callback=_not_nan,
                     help="Keep photos scoring at least this (at most, if lower is better): kept.txt, rejected.txt."),
        click.option("--group-near-duplicates", is_flag=True,
                     help="Group near-identical photos (cosine similarity of their features) and keep the best "
                          "of each group."),
        click.option("--similarity", type=click.FloatRange(-1, 1), default=None, callback=_not_nan,
                     help="Cosine similarity that makes two photos near-duplicates (default 0.7)."),
        click.option("--lists", type=click.Path(file_okay=False), default=None, metavar="DIR",
                     help="Folder for kept.txt and rejected.txt. Default: the folder of --report, else of --out, "
                          "else the current one. Lists there that mlsp score did not write are not replaced."),
        click.option("--replace-lists", is_flag=True,
                     help="Replace kept.txt and rejected.txt in the --lists folder even if mlsp score did not write "
                          "them (or they were edited since)."),
    ]
    names = ("report", "keep_top", "min_score", "group_near_duplicates", "similarity", "lists", "replace_lists")

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, curation={name: kwargs.pop(name) for name in names}, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


#: Beside the lists: the SHA-256 of the kept.txt and rejected.txt that ``mlsp score`` wrote there, so that
#: a rerun replaces its own lists and no one else's.
LISTS_STAMP = ".mlsp-lists.json"
LIST_NAMES = ("kept.txt", "rejected.txt")


def _check_curation(curation, out_file=None):
    """Refuse unwritable --report / --lists, and --similarity alone, before the work is done.

    Sets ``curation["lists"]`` when it was not given: the folder of --report, else of ``out_file``, else ".".
    """
    if curation["similarity"] is not None and not curation["group_near_duplicates"]:
        raise click.UsageError("--similarity sets the threshold of --group-near-duplicates; add that option.")
    check_output_path(curation["report"], "--report")
    for option in ("lists", "replace_lists"):
        source = click.get_current_context().get_parameter_source(option)
        if source is click.core.ParameterSource.COMMANDLINE and not _curating(curation):
            raise click.UsageError(f"--{option.replace('_', '-')} is about kept.txt and rejected.txt; add "
                                   "--keep-top, --min-score or --group-near-duplicates, which choose them.")
    if curation["lists"] is None:
        beside = curation["report"] or out_file
        curation["lists"] = (os.path.dirname(beside) or ".") if beside else "."
    if _curating(curation):
        check_output_path(os.path.join(curation["lists"], "kept.txt"), "--lists")


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _stamp(folder) -> dict:
    try:
        stamp = json.loads(Path(folder, LISTS_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _check_lists_are_ours(curation):
    """Refuse, before the work, to replace a kept.txt / rejected.txt that mlsp score did not write there."""
    if not _curating(curation) or curation["replace_lists"]:
        return
    folder, stamp = curation["lists"], None
    for name in LIST_NAMES:
        target = os.path.join(folder, name)
        if not os.path.lexists(target):
            continue
        stamp = _stamp(folder) if stamp is None else stamp
        try:
            ours = os.path.isfile(target) and stamp.get(name) == _digest(target)
        except OSError:
            ours = False
        if not ours:
            raise OutputError(f"--lists {folder}: {target} exists and is not a list mlsp score wrote there (or it "
                              "was changed since); move it, choose another folder with --lists, or add "
                              "--replace-lists to replace it.")


def _check_listable(paths) -> None:
    """Refuse, before the work, a path that kept.txt / rejected.txt cannot hold as one line.

    The lists are one path per line, made to be piped into other tools
    (``xargs -d '\\n' rm < rejected.txt``): a name with a line break would
    read as two paths there, one of which may be another file.
    """
    for path in paths:
        if "\n" in path or "\r" in path:
            raise InputError(f"{path!r} has a line break in its name, which kept.txt and rejected.txt (one path "
                             "per line) cannot hold; rename it, or score without --keep-top, --min-score and "
                             "--group-near-duplicates.")


def _curating(curation) -> bool:
    return curation["keep_top"] is not None or curation["min_score"] is not None or curation["group_near_duplicates"]


def _curate(out, curation, maps, frame, features, positions, higher_is_better, title, notes) -> dict:
    """``--report``, ``--keep-top``, ``--min-score``, ``--group-near-duplicates``: what they wrote, for the summary.

    ``maps``: each row's quality map in the frame's order (None for rows without one), or None: no maps.
    """
    import hashlib

    import numpy as np

    from ..curation import DUPLICATE_SIMILARITY, near_duplicate_groups, select

    done, groups, threshold = {}, None, None
    ok = frame["score"].notna().to_numpy()
    if curation["group_near_duplicates"]:
        narrow = np.full((len(frame), int(np.prod(features.shape[2:]))), np.nan)  # NaN: not scored
        rows = positions[ok]  # the scored photos' rows in `features`, in the frame's order
        order = np.argsort(rows)  # read in increasing order (the cache reads sorted rows)
        if len(rows):
            narrow[np.flatnonzero(ok)[order]] = np.asarray(features[rows[order]]).mean(axis=1).reshape(len(rows), -1)
        similarity = DUPLICATE_SIMILARITY if curation["similarity"] is None else curation["similarity"]
        groups = near_duplicate_groups(narrow, similarity)
        done["near_duplicate_groups"] = int(sum(np.bincount(groups[ok]) > 1)) if ok.any() else 0
    if _curating(curation):
        kept, _ = select(frame["score"], keep_top=curation["keep_top"], min_score=curation["min_score"],
                         groups=groups, higher_is_better=higher_is_better)
        lists = {"kept": frame["path"][kept], "rejected": frame["path"][~kept]}
        stamp = _stamp(curation["lists"])
        for name, part in lists.items():
            target = os.path.join(curation["lists"], f"{name}.txt")
            text = "".join(f"{line}\n" for line in part).encode("utf-8")
            _write(target, "--lists", lambda t=target, b=text: Path(t).write_bytes(b))
            done[f"{name}_list"] = target
            stamp[f"{name}.txt"] = hashlib.sha256(text).hexdigest()
        stamp_path = os.path.join(curation["lists"], LISTS_STAMP)
        _write(stamp_path, "--lists", lambda: Path(stamp_path).write_text(json.dumps(stamp), encoding="utf-8"))
        done.update(kept=int(kept.sum()), rejected=int((~kept).sum()))
        out.say(f"{done['kept']} kept ({done['kept_list']}), {done['rejected']} rejected ({done['rejected_list']})")
        if kept.any():  # the report's slider starts at the worst photo kept
            threshold = float(frame["score"][kept].min() if higher_is_better else frame["score"][kept].max())
        elif ok.any():  # nothing kept (--min-score beyond every score): the page keeps none either
            best = frame["score"].max() if higher_is_better else frame["score"].min()
            threshold = float(np.nextafter(best, np.inf if higher_is_better else -np.inf))
    if curation["report"]:
        from ..report import write_report

        report = curation["report"]
        _write(report, "--report", lambda: write_report(report, frame, maps, title=title, notes=notes,
                                                        higher_is_better=higher_is_better, threshold=threshold,
                                                        groups=groups))
        done["report"] = report
        out.say(f"report written to {report}")
    return done
