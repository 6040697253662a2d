"""Training throughput with the debugger hook + rules + profiler on, against all off.

Runs the real training program (classifier.train.main) twice per round on the same
generated ImageFolder under a temporary /opt/ml tree, alternating the order, and prints
images/s for each configuration and their ratio. The machine is shared and noisy: read
the ratio, not the absolute numbers.

    python benchmarks/debugger_overhead.py [--rounds 2] [--images-per-class 64] [--epochs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("red", "green", "blue", "yellow")
COLOURS = ((220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 210, 40))


def write_data(root: Path, per_class: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, colour in zip(CLASSES, COLOURS, strict=True):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.array(colour, float) + rng.normal(0, 40, (size, size, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")


def run_once(base: Path, hyperparameters: dict, debug: bool) -> dict:
    """One training job; returns its throughput and how long the end-of-job rules took."""
    from classifier import train

    for sub in ("model", "output", "checkpoints"):
        target = base / sub
        if target.exists():
            import shutil

            shutil.rmtree(target)
    config = base / "input" / "config"
    (config / "hyperparameters.json").write_text(
        json.dumps({**hyperparameters, "debug": str(debug).lower()})
    )
    profiler_config = config / "profilerconfig.json"
    profiler_config.write_text(json.dumps({"DisableProfiler": not debug}))
    os.environ["SAGEMAKER_BASE_DIR"] = str(base)
    os.environ["SM_PROCESSES_PER_HOST"] = "1"
    from classifier import job_outputs

    report_cpu = []
    original = job_outputs.run_rules_and_report

    def timed_report(*args, **kwargs):
        cpu = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            report_cpu.append(time.process_time() - cpu)

    job_outputs.run_rules_and_report = timed_report
    started, cpu = time.perf_counter(), time.process_time()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            train.main()
    finally:
        job_outputs.run_rules_and_report = original
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    images = metrics["epochs_run"] * sum(1 for _ in (base / "input/data/train").rglob("*.png"))
    return {
        "images_per_second": metrics["train_images_per_second"],
        "wall_seconds": wall,
        # CPU time of every thread of this process: far less sensitive to other tenants.
        "training_cpu_per_image": (cpu - sum(report_cpu)) / images,
        "rules_report_cpu_seconds": sum(report_cpu),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images-per-class", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.INFO)
    hyperparameters = {
        "model": args.model,
        "epochs": str(args.epochs),
        "batch_size": str(args.batch_size),
        "learning_rate": "0.001",
        "image_size": str(args.image_size),
        "num_workers": "0",
        "augmentation": "none",
        "seed": "0",
    }
    results: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "input" / "config").mkdir(parents=True)
        write_data(base / "input" / "data" / "train", args.images_per_class, args.image_size, 1)
        write_data(
            base / "input" / "data" / "valid",
            max(4, args.images_per_class // 4),
            args.image_size,
            2,
        )
        run_once(base, {**hyperparameters, "epochs": "1"}, False)  # warm-up: imports, caches
        for round_ in range(args.rounds):
            for debug in (False, True) if round_ % 2 == 0 else (True, False):
                results[debug].append(run_once(base, hyperparameters, debug))
    off = statistics.median(r["images_per_second"] for r in results[False])
    on = statistics.median(r["images_per_second"] for r in results[True])
    # Each round's on/off pair ran back to back: its ratio is the least noisy figure.
    ratios = [
        a["images_per_second"] / b["images_per_second"]
        for a, b in zip(results[True], results[False], strict=True)
    ]
    wall_off = statistics.median(r["wall_seconds"] for r in results[False])
    wall_on = statistics.median(r["wall_seconds"] for r in results[True])
    print(
        f"model={args.model} image_size={args.image_size} batch_size={args.batch_size} "
        f"train_images={args.images_per_class * len(CLASSES)} epochs={args.epochs}"
        f" rounds={args.rounds}"
    )
    print(f"all off:             {off:8.1f} images/s   job wall {wall_off:6.1f} s  (medians)")
    print(f"hook+rules+profiler: {on:8.1f} images/s   job wall {wall_on:6.1f} s  (medians)")
    print("per-round throughput ratios on/off: " + " ".join(f"{r:.3f}" for r in ratios))
    ratio = statistics.median(ratios)
    print(
        f"throughput ratio on/off (median of rounds): {ratio:.3f}"
        f"  (overhead {100 * (1 - ratio):.1f}%; target <= 10%)"
    )
    cpu_ratios = [
        b["training_cpu_per_image"] / a["training_cpu_per_image"]
        for a, b in zip(results[True], results[False], strict=True)
    ]
    cpu_ratio = statistics.median(cpu_ratios)
    print(
        "per-round training CPU-time ratios off/on (as throughput): "
        + " ".join(f"{r:.3f}" for r in cpu_ratios)
    )
    print(
        f"training CPU-time throughput ratio on/off (median): {cpu_ratio:.3f}"
        f"  (overhead {100 * (1 - cpu_ratio):.1f}%)"
    )
    rules_cpu = statistics.median(r["rules_report_cpu_seconds"] for r in results[True])
    print(f"end-of-job rules + report: {rules_cpu:.1f} CPU s per job (median)")
    print(
        f"job wall-time ratio on/off: {wall_on / wall_off:.3f}"
        "  (includes the end-of-job rules and report)"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "container"))
    sys.exit(main())
