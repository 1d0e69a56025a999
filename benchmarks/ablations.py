"""The paper's claims, tested on real photographs (BIQ2021, offline EfficientNet-Lite).

Experiments (choose with ``--experiments``; default: all):

heads     Single-1FC, Single-3FC, Multi-3FC on narrow features and Pool-3FC on
          wide features, each with the 8 views and without, against a ridge
          regression on the same narrow features (the paper's Tables 2-3).
rescaled  Full resolution vs images rescaled to 256x256 with 224x224 crops
          (the paper's "rescaled" baseline), Single-3FC on narrow features.
taps      All taps vs the last tap vs the last 5 taps (multiGAP), Single-3FC.
fig7      SRCC as taps are added from the last to the first (the paper's
          Fig. 7), saved as a plot.
speed     One training epoch on cached features vs one epoch of fine-tuning
          the same backbone end to end at full resolution (batch 32), per
          image, measured on a subset and scaled to the training set.

Split: 20 % of the images held out for testing (seed 0); the heads hold out 5 %
of the rest for validation themselves. Accuracy uses the median training MOS as
threshold (BIQ2021's MOS is on a 0-1 scale; AVA's threshold 5 has no analogue).

Run::

    python benchmarks/ablations.py --cache /tmp/biq_lite0.h5 --out ablations_out
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_mlsp import (
    MLSPFeatures,
    MLSPTransformer,
    Multi3FCRegressor,
    Pool3FCRegressor,
    Single1FCRegressor,
    Single3FCRegressor,
)
from sklearn_mlsp.datasets import load_csv_dataset
from sklearn_mlsp.metrics import paper_metrics

BIQ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "biq2021"
HEADS = {
    "Single-1FC": Single1FCRegressor,
    "Single-3FC": Single3FCRegressor,
    "Multi-3FC": Multi3FCRegressor,
    "Pool-3FC": Pool3FCRegressor,
}


def load_split(root: Path, limit=None, seed=0):
    data = load_csv_dataset(root / "labels.csv", root / "images", test_size=0.2, random_state=seed)
    paths, y, split = np.asarray(data.data), np.asarray(data.target, float), np.asarray(data.split)
    if limit:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.permutation(len(paths))[:limit])
        paths, y, split = paths[keep], y[keep], split[keep]
    train, test = split == "train", split == "test"
    return paths[train], y[train], paths[test], y[test]


def extract(items, backbone, augment, cache, verbose=1):
    """Wide MLSP features (lazy, cached); narrow ones are their spatial mean."""
    t = MLSPTransformer(backbone, pooling="wide", augment=augment, cache=cache, verbose=verbose).fit()
    start = time.perf_counter()
    view = t.transform(list(items))
    return t, view, time.perf_counter() - start


def narrow_of(view, tap_channels, batch=64) -> MLSPFeatures:
    """Narrow features (n, V, C, 1, 1) read in batches from wide ones (exact under area pooling)."""
    parts = [np.asarray(view[i:i + batch]).mean(axis=(3, 4), keepdims=True) for i in range(0, len(view), batch)]
    return MLSPFeatures(np.concatenate(parts).astype(np.float32), tap_channels, getattr(view, "view_names", None))


def fit_head(name, X_train, y_train, X_test, args, **params):
    settings = {"max_epochs": args.max_epochs, "random_state": args.seed, "verbose": args.verbose}
    if name == "Pool-3FC":
        settings["max_epochs"] = args.max_epochs_wide
    settings.update(params)
    head = HEADS[name](**settings)
    start = time.perf_counter()
    head.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    epochs = len(head.history)
    epoch_s = float(np.mean(head.history[:, "dur"]))
    return head.predict(X_test), {"train_s": seconds, "epochs": epochs, "epoch_s": epoch_s}


def ridge(X_train, y_train, X_test):
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 13)))

    def flat(X):
        return np.asarray(X).mean(axis=1).reshape(len(X), -1)

    start = time.perf_counter()
    model.fit(flat(X_train), y_train)
    return model.predict(flat(X_test)), {"train_s": time.perf_counter() - start}


def taps_slice(X: MLSPFeatures, taps: slice) -> MLSPFeatures:
    channels = list(X.tap_channels)
    bounds = np.cumsum([0] + channels)
    idx = range(len(channels))[taps]
    cols = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in idx])
    return MLSPFeatures(np.ascontiguousarray(X[:, :, cols]), [channels[i] for i in idx], X.view_names)


def rescaled_items(paths, side=256):
    """The paper's 'rescaled' input: every image squashed to side x side."""
    return [np.asarray(Image.open(p).convert("RGB").resize((side, side), Image.BICUBIC)) for p in paths]


def finetune_seconds_per_image(backbone, paths, batch_size=32, n_batches=2, device="cpu"):
    """Time of end-to-end fine-tuning (forward + backward + Adam step) per image at full resolution."""
    from sklearn_mlsp.backbones import get_backbone
    from sklearn_mlsp.images import load_rgb
    from sklearn_mlsp.views import cut_views, make_views

    model = get_backbone(backbone).create()
    head = torch.nn.Linear(model.num_features, 1)
    net = torch.nn.Sequential(model, head).train().to(device)
    model.reset_classifier(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    rng = np.random.default_rng(0)
    # A batch needs one size: use the images of the most common size.
    sizes = [Image.open(p).size for p in paths]
    common = max(set(sizes), key=sizes.count)
    paths = [p for p, s in zip(paths, sizes) if s == common]
    batches = []
    for b in range(n_batches + 1):  # +1 warm-up batch
        imgs = []
        for i in range(b * batch_size, (b + 1) * batch_size):
            rgb = load_rgb(paths[i % len(paths)])
            views = make_views(*rgb.shape[:2], augment=True)
            imgs.append(cut_views(rgb, [views[rng.integers(len(views))]])[0])  # a random crop/flip
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div(255)
        batches.append(((x - 0.5) / 0.5, torch.rand(len(imgs), 1)))
    times = []
    for i, (x, y) in enumerate(batches):
        start = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x.to(device)), y.to(device))
        loss.backward()
        opt.step()
        if i > 0:
            times.append((time.perf_counter() - start) / len(x))
    return float(np.mean(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=BIQ)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--experiments", default="heads,speed,taps,rescaled,fig7")
    parser.add_argument("--limit", type=int, default=None, help="use at most N images (quick runs)")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--max-epochs-wide", type=int, default=20,
                        help="epochs for Pool-3FC (about 30 s an epoch on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("ablations_out"))
    args = parser.parse_args(argv)
    experiments = args.experiments.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    tr_paths, y_tr, te_paths, y_te = load_split(args.root, args.limit, args.seed)
    threshold = float(np.median(y_tr))
    print(f"BIQ2021: {len(tr_paths)} train / {len(te_paths)} test images; backbone {args.backbone}; "
          f"accuracy threshold = median train MOS = {threshold:.4f}")
    results = {"config": vars(args) | {"root": str(args.root), "cache": str(args.cache), "out": str(args.out)},
               "n_train": len(tr_paths), "n_test": len(te_paths), "threshold": threshold, "rows": []}

    def record(experiment, label, pred, info):
        row = {"experiment": experiment, "model": label, **paper_metrics(y_te, pred, threshold), **info}
        results["rows"].append(row)
        print(f"  {experiment:<9} {label:<44} SRCC {row['srcc']:.3f}  PLCC {row['plcc']:.3f}  "
              f"acc {100 * row['accuracy']:.1f} %")
        (args.out / "results.json").write_text(json.dumps(results, indent=2))

    feats = {}
    for augment in (True, False):
        t, tr_view, sec_tr = extract(tr_paths, args.backbone, augment, args.cache)
        _, te_view, sec_te = extract(te_paths, args.backbone, augment, args.cache)
        feats[augment] = (t, tr_view, te_view)
        print(f"features ({'8 views' if augment else '1 view'}): {tr_view.shape} train, "
              f"{sec_tr + sec_te:.0f} s (cached after the first run)")
    narrow = {a: (narrow_of(v[1], v[0].tap_channels_), narrow_of(v[2], v[0].tap_channels_)) for a, v in feats.items()}

    if "heads" in experiments:
        print("heads: narrow heads on narrow features, Pool-3FC on wide, ridge baseline")
        for augment in (True, False):
            tag = "8 views" if augment else "1 view (-aug)"
            Xn_tr, Xn_te = narrow[augment]
            pred, info = ridge(Xn_tr, y_tr, Xn_te)
            record("heads", f"Ridge, narrow, {tag}", pred, info)
            for name in ("Single-1FC", "Single-3FC", "Multi-3FC"):
                pred, info = fit_head(name, Xn_tr, y_tr, Xn_te, args)
                record("heads", f"{name}, narrow, {tag}", pred, info)
            _, w_tr, w_te = feats[augment]
            pred, info = fit_head("Pool-3FC", w_tr, y_tr, w_te, args)
            record("heads", f"Pool-3FC, wide, {tag}", pred, info)

    Xn_tr, Xn_te = narrow[True]
    n_taps = len(Xn_tr.tap_channels)
    if "speed" in experiments:
        print("speed: feature epoch vs fine-tuning epoch (per training set)")
        ft = finetune_seconds_per_image(args.backbone, list(tr_paths[:96]))
        narrow_epoch = fit_head("Single-3FC", Xn_tr, y_tr, Xn_te, args, max_epochs=3)[1]["epoch_s"]
        _, w_tr, w_te = feats[True]
        wide_epoch = fit_head("Pool-3FC", w_tr, y_tr, w_te, args, max_epochs=1)[1]["epoch_s"]
        finetune_epoch = ft * len(tr_paths)
        speed = {"finetune_s_per_image": ft, "finetune_epoch_s": finetune_epoch,
                 "narrow_epoch_s": narrow_epoch, "wide_epoch_s": wide_epoch,
                 "ratio_narrow": finetune_epoch / narrow_epoch, "ratio_wide": finetune_epoch / wide_epoch}
        results["speed"] = speed
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"  fine-tuning: {ft:.3f} s/image -> {finetune_epoch:.0f} s per epoch of {len(tr_paths)} images")
        print(f"  Single-3FC on narrow features: {narrow_epoch:.2f} s per epoch -> {speed['ratio_narrow']:.0f}x faster")
        print(f"  Pool-3FC on wide features: {wide_epoch:.2f} s per epoch -> {speed['ratio_wide']:.0f}x faster")

    if "taps" in experiments:
        print(f"taps: all {n_taps} vs last 5 (multiGAP) vs last 1, Single-3FC, 8 views")
        for label, sl in (("all taps", slice(None)), ("last 5 taps", slice(-5, None)), ("last tap", slice(-1, None))):
            pred, info = fit_head("Single-3FC", taps_slice(Xn_tr, sl), y_tr, taps_slice(Xn_te, sl), args)
            record("taps", f"Single-3FC, {label}", pred, info)

    if "rescaled" in experiments:
        print("rescaled: 256x256 images, 224x224 crops (8 views) vs full resolution")
        t, r_tr, _ = extract(rescaled_items(tr_paths), args.backbone, True, args.cache)
        _, r_te, _ = extract(rescaled_items(te_paths), args.backbone, True, args.cache)
        Xr_tr, Xr_te = narrow_of(r_tr, t.tap_channels_), narrow_of(r_te, t.tap_channels_)
        pred, info = fit_head("Single-3FC", Xr_tr, y_tr, Xr_te, args)
        record("rescaled", "Single-3FC, narrow, rescaled 256 / 224 crops", pred, info)
        pred, info = fit_head("Single-3FC", narrow[True][0], y_tr, narrow[True][1], args)
        record("rescaled", "Single-3FC, narrow, full resolution", pred, info)

    if "fig7" in experiments:
        print("fig7: SRCC as taps are added from the last to the first")
        curve = []
        for k in range(1, n_taps + 1):
            sl = slice(n_taps - k, None)
            pred, info = fit_head("Single-3FC", taps_slice(Xn_tr, sl), y_tr, taps_slice(Xn_te, sl), args)
            record("fig7", f"Single-3FC, last {k} taps", pred, info)
            curve.append((k, results["rows"][-1]["srcc"]))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(*zip(*curve), marker="o")
        ax.set_xlabel("number of taps used (from the last block backwards)")
        ax.set_ylabel("test SRCC")
        ax.set_title(f"BIQ2021, {args.backbone}, Single-3FC on narrow MLSP features")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.out / "fig7_taps.png", dpi=120)
        print(f"  plot saved to {args.out / 'fig7_taps.png'}")

    print()
    print("| experiment | model | SRCC | PLCC | accuracy |")
    print("|---|---|---|---|---|")
    for row in results["rows"]:
        print(f"| {row['experiment']} | {row['model']} | {row['srcc']:.3f} | {row['plcc']:.3f} | "
              f"{100 * row['accuracy']:.1f} % |")
    return results


if __name__ == "__main__":
    main()
