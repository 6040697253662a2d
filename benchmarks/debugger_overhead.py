"""Training throughput with the debugger hook + rules + profiler on, against all off.

Runs the real training program (classifier.training.program.main) twice per round on the same
generated ImageFolder under a temporary /opt/ml tree, alternating the order, and prints
images/s for each configuration and their ratio, and each job's wall time. Both run at the
default precision (bf16 where the CPU runs it natively) and export nothing for serving: the
export is the same work in both, and not the Debugger's. The machine is shared and noisy: read
the ratio, not the absolute numbers.

    python benchmarks/debugger_overhead.py [--rounds 9] [--images-per-class 128] [--epochs 2]
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

from cpu import describe_cpu
from synthetic_data import write_colour_classes

CLASSES = ("red", "green", "blue", "yellow")


def write_data(root: Path, per_class: int, size: int, seed: int) -> None:
    write_colour_classes(root, dict.fromkeys(CLASSES, per_class), size, seed)


@contextlib.contextmanager
def timed_rules_and_report():
    """Collects the CPU seconds of each end-of-job rules + report run into the yielded list."""
    from classifier.training import job_outputs

    report_cpu: list[float] = []
    original = job_outputs.run_rules_and_report

    def timed(*args, **kwargs):
        cpu = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            report_cpu.append(time.process_time() - cpu)

    job_outputs.run_rules_and_report = timed
    try:
        yield report_cpu
    finally:
        job_outputs.run_rules_and_report = original


def run_once(base: Path, hyperparameters: dict, debug: bool) -> dict:
    """One training job; returns its throughput and how long the end-of-job rules took."""
    from classifier.training import program as train

    for sub in ("model", "output", "checkpoints"):
        target = base / sub
        if target.exists():
            import shutil

            shutil.rmtree(target)
    config = base / "input" / "config"
    (config / "hyperparameters.json").write_text(json.dumps({**hyperparameters, "debug": str(debug).lower()}))
    profiler_config = config / "profilerconfig.json"
    profiler_config.write_text(json.dumps({"DisableProfiler": not debug}))
    os.environ["SAGEMAKER_BASE_DIR"] = str(base)
    os.environ["SM_PROCESSES_PER_HOST"] = "1"
    started, cpu = time.perf_counter(), time.process_time()
    with timed_rules_and_report() as report_cpu, contextlib.redirect_stdout(io.StringIO()):
        train.main()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    images = metrics["epochs_run"] * sum(1 for _ in (base / "input/data/train").rglob("*.png"))
    return {
        "precision": metrics["precision"]["precision"],
        "images_per_second": metrics["train_images_per_second"],
        "wall_seconds": wall,
        # CPU time of every thread of this process: far less sensitive to other tenants.
        "training_cpu_per_image": (cpu - sum(report_cpu)) / images,
        "rules_report_cpu_seconds": sum(report_cpu),
    }


def measure(args, image_size: int, batch_size: int) -> dict[bool, list[dict]]:
    """Alternating on/off jobs at one step size; each round's pair runs back to back."""
    hyperparameters = {
        "model": args.model,
        "epochs": str(args.epochs),
        "batch_size": str(batch_size),
        "learning_rate": "0.001",
        "image_size": str(image_size),
        "num_workers": "0",
        "augmentation": "none",
        "seed": "0",
        "inference_export": "none",
    }
    results: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "input" / "config").mkdir(parents=True)
        data = base / "input" / "data"
        write_data(data / "train", args.images_per_class, image_size, 1)
        write_data(data / "valid", max(4, args.images_per_class // 4), image_size, 2)
        run_once(base, {**hyperparameters, "epochs": "1"}, False)  # warm-up: imports, caches
        for round_ in range(args.rounds):
            for debug in (False, True) if round_ % 2 == 0 else (True, False):
                results[debug].append(run_once(base, hyperparameters, debug))
    return results


def report(args, image_size: int, batch_size: int, target: float, results) -> None:
    off = statistics.median(r["images_per_second"] for r in results[False])
    on = statistics.median(r["images_per_second"] for r in results[True])
    ratios = [
        a["images_per_second"] / b["images_per_second"]
        for a, b in zip(results[True], results[False], strict=True)
    ]
    wall_off = statistics.median(r["wall_seconds"] for r in results[False])
    wall_on = statistics.median(r["wall_seconds"] for r in results[True])
    ratio = statistics.median(ratios)
    rules_cpu = statistics.median(r["rules_report_cpu_seconds"] for r in results[True])
    precisions = sorted({r["precision"] for runs in results.values() for r in runs})
    print(
        f"\n{image_size} px / batch {batch_size}: model={args.model} precision={','.join(precisions)} "
        f"train_images={args.images_per_class * len(CLASSES)} epochs={args.epochs} rounds={args.rounds}"
    )
    print(f"  all off:             {off:8.1f} images/s   job wall {wall_off:6.1f} s  (medians)")
    print(f"  hook+rules+profiler: {on:8.1f} images/s   job wall {wall_on:6.1f} s  (medians)")
    print("  per-round throughput ratios on/off: " + " ".join(f"{r:.3f}" for r in ratios))
    verdict = "met" if 1 - ratio <= target else "NOT met"
    print(
        f"  throughput ratio on/off (median of rounds): {ratio:.3f}"
        f"  (overhead {100 * (1 - ratio):.1f}%; target <= {100 * target:.0f}%: {verdict})"
    )
    cpu_ratios = [
        b["training_cpu_per_image"] / a["training_cpu_per_image"]
        for a, b in zip(results[True], results[False], strict=True)
    ]
    cpu_ratio = statistics.median(cpu_ratios)
    print(
        f"  training CPU-time ratio on/off, as throughput (median of rounds): {cpu_ratio:.3f}"
        "  (CPU seconds per image: what other tenants of the machine change least)"
    )
    print(f"  end-of-job rules + report: {rules_cpu:.2f} CPU s per job (median)")
    print(
        f"  job wall-time ratio on/off: {wall_on / wall_off:.3f}  "
        "(the whole job, end-of-job rules and report included)"
    )


CONFIGURATIONS = """configurations, each a whole ./train job in this process on the same data:
  all off:             debug=false (no smdebug hook, no end-of-job rules, no report), profiler disabled
  hook+rules+profiler: debug=true (the hook saves what the rules read; the rules and the HTML report
                       run at the job's end), profiler on (system sampling, step timing)
  both:                precision=auto, inference_export=none, num_workers=0, TensorBoard files on"""

# (image size, batch size, overhead target): a slow step and a fast one.
STEP_SIZES = ((64, 64, 0.05), (32, 16, 0.10))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--images-per-class", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args(argv)

    import logging

    logging.disable(logging.INFO)
    print(describe_cpu())
    print(CONFIGURATIONS)
    measured = [(size, batch, target, measure(args, size, batch)) for size, batch, target in STEP_SIZES]
    for size, batch, target, results in measured:
        report(args, size, batch, target, results)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "container"))
    sys.exit(main())
