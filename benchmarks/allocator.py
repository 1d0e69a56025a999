"""What glibc's allocator costs the process that extracts: defaults against ``keep_freed_memory``.

With glibc's defaults, a process that runs a network image after image
returns the top of its heap to the kernel after each forward pass and faults
the pages in again for the next one. The ``mlsp`` command and extraction
workers call :func:`sklearn_mlsp.allocator.keep_freed_memory` first (large
blocks from the heap, trimmed above 1 GiB only); a library caller's own
process keeps the defaults unless it calls it.

Each round runs two fresh processes, one after the other, on the same core
(``os.sched_setaffinity``, one torch thread, no decoding processes), on the
same real photographs (BIQ2021, 512x512 JPEGs; EfficientNet-Lite0 with its
offline ImageNet weights, narrow pooling, one view): (a) glibc's defaults,
(b) after ``keep_freed_memory()``. Each process first extracts a few other
photographs (the backbone loaded, the allocator warm), then the timed ones.
Printed per round: images/s, minor page faults per image, and (b)/(a).

    python benchmarks/allocator.py --n-images 60 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIQ = ROOT.parent / "shared" / "data" / "biq2021" / "images"

ONE_RUN = textwrap.dedent("""
    import json, os, resource, sys, time
    os.sched_setaffinity(0, {int(sys.argv[1])})
    import torch
    torch.set_num_threads(1)
    if sys.argv[2] == "kept":
        from sklearn_mlsp.allocator import keep_freed_memory
        keep_freed_memory()
    from sklearn_mlsp import MLSPTransformer
    paths = json.loads(sys.argv[3])
    t = MLSPTransformer("efficientnet_lite0", pooling="narrow", augment=False, device="cpu",
                        n_decoders=0, verbose=0).fit()
    t.transform(paths[:4])  # warm-up: other photographs
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    t.transform(paths[4:])
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"rate": (len(paths) - 4) / seconds, "faults": faults / (len(paths) - 4)}))
""")


def run(setting, paths, core):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", ONE_RUN, str(core), setting, json.dumps(paths)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args(argv)
    paths = sorted(str(p) for p in BIQ.glob("*.jpg"))[: args.n_images + 4]
    if len(paths) < args.n_images + 4:
        sys.exit(f"needs {args.n_images + 4} photographs in {BIQ} (the project's shared BIQ2021 subset)")
    print(f"{args.n_images} BIQ2021 photos, Lite0 narrow 1 view, one core ({args.core}), one torch thread")
    print(f"{'round':>5} {'defaults img/s':>15} {'faults/img':>11} {'kept img/s':>11} {'faults/img':>11} {'ratio':>6}")
    ratios = []
    for r in range(args.rounds):
        a = run("defaults", paths, args.core)
        b = run("kept", paths, args.core)
        ratios.append(b["rate"] / a["rate"])
        print(f"{r + 1:>5} {a['rate']:>15.2f} {a['faults']:>11.0f} {b['rate']:>11.2f} {b['faults']:>11.0f} "
              f"{ratios[-1]:>5.2f}x", flush=True)
    print(f"median (b)/(a): {statistics.median(ratios):.2f}x over {args.rounds} rounds")


if __name__ == "__main__":
    main()
