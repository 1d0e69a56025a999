"""Mutation fuzzing of model files, run by tests/test_model_fuzz.py in a subprocess.

``python model_fuzz.py FOLDER`` saves a few small valid models into FOLDER,
derives mutants of each (every JSON field replaced by null, a value of the
wrong type, an out-of-range number and a huge number; every array's dtype,
shape and offsets changed in the safetensors header; the header length
corrupted; the file truncated at 20 random points) and loads each one under
an address-space limit (RLIMIT_AS: what the process had after its imports,
plus 2 GiB) and a time limit per mutant. It prints one JSON object: the
counts of each outcome, and every mutant whose outcome is not allowed:

- ``refused``: ``ModelFileError`` whose message names the file and the
  mutated field (the parameter or attribute, or the array);
- ``same``: loads and predicts exactly what the original predicts;
- ``edited_value``: a fitted number of a scikit-learn estimator was replaced
  by another finite number of the same kind (e.g. ``intercept_``): the file
  is valid, and predictions follow the edit (no format can tell an edited
  number from a trained one without a signature).

Anything else (another exception, a crash, a wrong prediction, a blown
memory or time limit) is a ``bad`` outcome.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import signal
import struct
import sys
import time
import traceback
from pathlib import Path

import numpy as np

SEED = 20260
MEMORY_HEADROOM = 2 * 2**30
SECONDS_PER_MUTANT = 30
# JSON keys that are the format's own, not a field a message would name.
_SYNTAX = {"t", "v", "key", "params", "state", "class", "name", "shape", "template"}


# ------------------------------------------------------------------ models


def _models(folder):
    """(name, path, X, expected predictions) of the valid models mutated."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    from sklearn_mlsp import MLSPFeatures, Single3FCRegressor, save_model

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 5))
    y = rng.normal(size=24)
    narrow = MLSPFeatures(rng.normal(size=(24, 2, 6, 1, 1)).astype(np.float32), (2, 4), ("a", "b"))
    from helpers import tiny_transformer, write_images

    images = write_images(Path(folder) / "img", 3, 40, 40)
    models = {
        "ridge": (make_pipeline(StandardScaler(), RidgeCV(alphas=(0.1, 1.0))), X, y),
        "svr": (SVR(C=2.0), X, y),
        "single3fc": (Single3FCRegressor(max_epochs=1, module__hidden=(8, 4), random_state=0), narrow, y),
        "mlsp": (make_pipeline(tiny_transformer(output="flat"), RidgeCV()), images, np.arange(3.0)),
    }
    out = []
    for name, (model, features, target) in models.items():
        model.fit(features, target)
        path = os.path.join(folder, f"{name}.mlsp")
        save_model(model, path, y=target)
        out.append((name, path, features, model.predict(features)))
    return out


#: Models whose every load rebuilds a transformer (seconds each): only a sample of
#: their transformer's JSON fields is mutated, and no arrays (those of the other
#: models cover the same checks).
SAMPLED = {"mlsp": 10}


# ------------------------------------------------------------------ the file's parts


def _split(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:], data


def _join(header, body):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _fields(node, path=()):
    """Every (path, value) of a JSON tree, the root excluded."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        yield (*path, key), value
        yield from _fields(value, (*path, key))


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _replacements(value):
    """null, a wrong type, an out-of-range number, a huge number."""
    out = [("null", None)]
    if isinstance(value, bool):
        out += [("wrong_type", "yes"), ("huge", 1e308)]
    elif isinstance(value, (int, float)):
        out += [("wrong_type", "12"), ("out_of_range", -1 if isinstance(value, int) else -1.5),
                ("huge", 10**18 if isinstance(value, int) else 1e308)]
    elif isinstance(value, str):
        out += [("wrong_type", 7), ("huge", "x" * 100_000)]
    else:
        out += [("wrong_type", "x"), ("huge", 10**18)]
    return out


def _named_field(path):
    """The parameter, attribute or module weight a message should name, for a JSON path."""
    for i in range(len(path) - 1, -1, -1):
        key = path[i]
        if isinstance(key, str) and key not in _SYNTAX:
            if i > 0 and path[i - 1] == "module_state":
                return key
            return key
    return "model"


def json_mutants(path):
    header, body, _ = _split(path)
    meta = header["__metadata__"]
    structure = json.loads(meta["structure"])
    for where, value in _fields(structure):
        for kind, new in _replacements(value):
            if new == value and type(new) is type(value):
                continue
            mutated = copy.deepcopy(structure)
            _set(mutated, where, new)
            h = copy.deepcopy(header)
            h["__metadata__"]["structure"] = json.dumps(mutated)
            in_state = "state" in where and "module_state" not in where
            numeric = (isinstance(value, (int, float)) and not isinstance(value, bool)
                       and isinstance(new, (int, float)) and not isinstance(new, bool))
            yield {"kind": f"json:{kind}", "where": ".".join(map(str, where)), "field": _named_field(where),
                   "fitted_number": in_state and numeric and isinstance(new, type(value)),
                   "data": _join(h, body)}


def array_mutants(path):
    header, body, _ = _split(path)
    for name in sorted(k for k in header if k != "__metadata__"):
        entry = header[name]
        size = len(body)
        start, end = entry["data_offsets"]
        n = int(np.prod(entry["shape"]))
        edits = {
            "dtype_same_size": {"dtype": {"F64": "I64", "F32": "I32", "I32": "F32", "I64": "F64"}.get(
                entry["dtype"], "F32")},
            "dtype_other_size": {"dtype": "F16" if entry["dtype"] != "F16" else "F64"},
            "dtype_unknown": {"dtype": "OBJECT"},
            "shape_longer": {"shape": [n + 1]},
            "shape_scalar": {"shape": []},
            "shape_huge": {"shape": [10**12, 10**6]},
            "shape_reordered": {"shape": list(reversed(entry["shape"])) + [1]},
            "offsets_beyond": {"data_offsets": [start, size + 8]},
            "offsets_shifted": {"data_offsets": [start + 1, end + 1]},
            "offsets_negative": {"data_offsets": [-8, end]},
            "offsets_reversed": {"data_offsets": [end, start]},
        }
        for kind, change in edits.items():
            h = copy.deepcopy(header)
            h[name].update(change)
            yield {"kind": f"array:{kind}", "where": name, "field": name, "fitted_number": False,
                   "data": _join(h, body)}


def header_mutants(path):
    _, _, data = _split(path)
    (n,) = struct.unpack("<Q", data[:8])
    for kind, value in {"plus_one": n + 1, "minus_one": n - 1, "zero": 0, "file_size": len(data),
                        "huge": 2**62, "max": 2**64 - 1}.items():
        yield {"kind": f"header_length:{kind}", "where": "header", "field": None, "fitted_number": False,
               "data": struct.pack("<Q", value) + data[8:]}


def truncations(path, rng, count=20):
    _, _, data = _split(path)
    for cut in sorted(rng.choice(len(data), size=min(count, len(data)), replace=False)):
        yield {"kind": "truncated", "where": f"byte {int(cut)}", "field": None, "fitted_number": False,
               "data": data[:int(cut)]}


# ------------------------------------------------------------------ running one mutant


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _names_field(message, mutant, path, references):
    if os.path.basename(path) not in message:
        return False
    field = mutant["field"]
    if field is None:
        return True
    names = {str(field), *references.get(field, ())}
    return any(name in message for name in names)


def _references(path):
    """Array name -> the attributes and weights that refer to it (any of them names the array)."""
    header, _, _ = _split(path)
    structure = json.loads(header["__metadata__"]["structure"])
    out = {}
    for where, value in _fields(structure):
        if isinstance(value, dict) and value.get("t") == "array":
            out.setdefault(value.get("key"), set()).add(str(where[-1]))
        if len(where) >= 2 and where[-2] == "module_state" and isinstance(value, str):
            out.setdefault(value, set()).add(str(where[-1]))
    return out


def run_mutant(mutant, path, X, expected, references):
    from sklearn_mlsp import ModelFileError, load_model

    with open(path, "wb") as fh:
        fh.write(mutant["data"])
    signal.alarm(SECONDS_PER_MUTANT)
    try:
        try:
            model = load_model(path)
        except ModelFileError as exc:
            if _names_field(str(exc), mutant, path, references):
                return "refused", None
            return "bad", f"ModelFileError not naming {mutant['field']!r}: {exc}"
        pred = model.predict(X)
        if np.array_equal(pred, expected, equal_nan=True):
            return "same", None
        if mutant["fitted_number"]:
            return "edited_value", None
        return "bad", f"loaded and predicted differently: {pred[:3]} vs {expected[:3]}"
    except _Timeout:
        return "bad", f"over {SECONDS_PER_MUTANT} s"
    except MemoryError:
        return "bad", "MemoryError (over the address-space limit)"
    except Exception as exc:  # noqa: BLE001 -- any other outcome is what the fuzz looks for
        return "bad", f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=-3)[-600:]}"
    finally:
        signal.alarm(0)


def _limit_memory():
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    limit = vm + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:  # the limit holds: more than the headroom cannot be had
        np.ones(MEMORY_HEADROOM + 2**28, dtype=np.uint8)
    except MemoryError:
        return limit
    raise AssertionError("RLIMIT_AS did not limit this process's memory")


def main(folder):
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(SEED)
    models = _models(folder)
    limit = _limit_memory() if sys.platform.startswith("linux") else None
    signal.signal(signal.SIGALRM, _on_alarm)
    counts, bad, per_model, loaded = {}, [], {}, []
    started = time.perf_counter()
    for name, original, X, expected in models:
        references = _references(original)
        if name in SAMPLED:
            fields = [m for m in json_mutants(original) if m["where"].startswith("params.steps.0.v.1.")]
            chosen = rng.choice(len(fields), size=min(SAMPLED[name], len(fields)), replace=False)
            mutants = [*(fields[i] for i in sorted(chosen)), *header_mutants(original), *truncations(original, rng)]
        else:
            mutants = [*json_mutants(original), *array_mutants(original), *header_mutants(original),
                       *truncations(original, rng)]
        target = os.path.join(folder, f"mutant_{name}.mlsp")
        per_model[name] = len(mutants)
        for mutant in mutants:
            outcome, why = run_mutant(mutant, target, X, expected, references)
            counts[outcome] = counts.get(outcome, 0) + 1
            family = mutant["kind"].split(":")[0]
            key = f"{family}:{outcome}"
            counts[key] = counts.get(key, 0) + 1
            if outcome == "bad":
                bad.append({"model": name, "kind": mutant["kind"], "where": mutant["where"], "why": why})
            elif outcome != "refused":
                loaded.append(f"{name} {mutant['kind']} {mutant['where']}: {outcome}")
    print(json.dumps({"counts": counts, "mutants": per_model, "bad": bad, "loaded": loaded, "memory_limit": limit,
                      "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(sys.argv[1])
