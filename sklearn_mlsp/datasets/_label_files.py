"""The one reader of label files (CSV-like or Excel) that the loaders share, with line-numbered errors."""

import csv as _csv
import os

import numpy as np
import pandas as pd

from ._common import _N_SHOWN

_SEPARATORS = (",", ";", "\t")


def _detect_separator(header, wanted):
    """Pick the separator that makes the header hold the wanted columns.

    Falls back to the one giving the most columns, comma on ties.
    """
    splits = {
        sep: [name.strip() for name in next(_csv.reader([header], delimiter=sep), [])]
        for sep in _SEPARATORS
    }
    for sep, names in splits.items():
        if all(w in names for w in wanted):
            return sep
    return max(_SEPARATORS, key=lambda sep: len(splits[sep]))


def _show_rows(frame, lines, rows, columns):
    """Quote a few rows of a label file, with their line numbers."""
    shown = []
    for i in rows[:_N_SHOWN]:
        cells = ", ".join(f"{c}={frame.at[i, c]!r}" for c in columns)
        shown.append(f"line {lines[i]}: {cells}")
    more = f"; ... ({len(rows)} in all)" if len(rows) > _N_SHOWN else ""
    return "; ".join(shown) + more


def _label_header(path):
    """The column names of a label file (CSV-like or Excel), to choose columns by."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path!r}")
    if _is_excel(path):
        return [str(c).strip() for c in _read_excel(path, nrows=0).columns]
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = f.readline()
    sep = _detect_separator(first, [])
    return [name.strip() for name in next(_csv.reader([first], delimiter=sep), [])]


def _is_excel(path):
    return os.fspath(path).lower().endswith((".xlsx", ".xls"))


def _read_excel(path, **kwargs):
    """An Excel label file as a DataFrame of str (pandas needs openpyxl for it)."""
    try:
        return pd.read_excel(path, dtype=str, **kwargs)
    except ImportError as exc:
        raise ImportError(
            f"{path} is an Excel file; reading it needs openpyxl ({exc}). Install it with "
            "'pip install openpyxl', or export the sheet to CSV and pass that file."
        ) from None


def _read_label_file(path, image_col, score_col, split_col, extra_cols=()):
    """Read a label file as text.

    Returns
    -------
    frame : DataFrame
        All cells as str, stripped; blank lines dropped.
    lines : ndarray of int
        Line in the file of each row, for error messages.
    sep : str
        The separator found.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path!r}")
    wanted = [c for c in (image_col, score_col, split_col, *extra_cols) if c is not None]
    if _is_excel(path):
        table = _read_excel(path).fillna("")
        table.columns = [str(c).strip() for c in table.columns]
        table = table.apply(lambda column: column.astype(str).str.strip())
        table = table[(table != "").any(axis=1)]
        header, sep = list(table.columns), ","
        rows = table.to_numpy().tolist()
        lines = (table.index.to_numpy() + 2).tolist()  # line 1 is the header
    else:
        rows, lines, header, sep = _read_csv_rows(path, wanted)
    absent = [c for c in wanted if c not in header]
    if absent:
        raise ValueError(
            f"{path}: no column {', '.join(map(repr, absent))}; the file "
            f"({sep!r}-separated) has the columns {header}. "
            "Pass image_col=, score_col= (and split_col=) with the right names."
        )
    repeated = [c for c in wanted if header.count(c) > 1]
    if repeated:
        raise ValueError(
            f"{path}: column {repeated[0]!r} appears more than once in the header"
        )
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    return frame, np.asarray(lines, dtype=np.int64), sep


def _read_csv_rows(path, wanted):
    """The rows of a CSV-like label file, their line numbers, header and separator."""
    rows, lines = [], []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
            if not first.strip():
                raise ValueError(f"{path}: the label file is empty (no header line)")
            sep = _detect_separator(first, wanted)
            f.seek(0)
            # The csv module rather than pandas: pandas silently turns a row
            # with an extra field into an index, and loses line numbers.
            reader = _csv.reader(f, delimiter=sep, skipinitialspace=True)
            header = [name.strip() for name in next(reader)]
            for record in reader:
                record = [cell.strip() for cell in record]
                if not any(record):
                    continue
                if len(record) > len(header) and not any(record[len(header) :]):
                    record = record[: len(header)]  # trailing separators
                if len(record) != len(header):
                    raise ValueError(
                        f"{path}, line {reader.line_num}: {len(record)} fields where "
                        f"the header has {len(header)} ({sep!r}-separated): {record}"
                    )
                rows.append(record)
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    except _csv.Error as exc:
        raise ValueError(f"{path}: cannot be parsed as CSV: {exc}") from None
    return rows, lines, header, sep


def _parse_scores(frame, lines, path, image_col, score_col, sep, what="score column"):
    """Convert the score column (or another numeric one) to float, naming the offending rows."""
    text = frame[score_col].astype(str).str.strip()
    scores = pd.to_numeric(text, errors="coerce")
    if sep == ";" and scores.isna().any() and text.str.contains(",").any():
        # Semicolon files often come with decimal commas (European locale).
        scores = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    scores = scores.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(
            f"{path}: {bad.size} non-numeric or missing value(s) in {what} "
            f"{score_col!r}: {_show_rows(frame, lines, bad, [image_col, score_col])}"
        )
    return scores


def _check_names(frame, lines, path, image_col):
    """Reject empty and duplicate image names, naming the rows."""
    names = frame[image_col].astype(str).str.strip()
    empty = np.flatnonzero((names == "").to_numpy())
    if empty.size:
        raise ValueError(
            f"{path}: {empty.size} empty image name(s) in column {image_col!r}: "
            f"{_show_rows(frame, lines, empty, [image_col])}"
        )
    dup = names.duplicated(keep=False).to_numpy()
    if dup.any():
        first = names[dup].unique()[:_N_SHOWN]
        detail = "; ".join(
            f"{n!r} on lines {lines[(names == n).to_numpy()].tolist()}" for n in first
        )
        raise ValueError(
            f"{path}: {names[dup].nunique()} image name(s) appear more than once "
            f"in column {image_col!r}: {detail}"
        )
    return names.to_numpy(dtype=object)
