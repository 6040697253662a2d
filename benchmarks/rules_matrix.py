"""Debugger rule verdicts on a matrix of real training jobs: healthy ones and sabotaged ones.

Every job is the real training program (classifier.training.program.main) under a temporary /opt/ml
tree with ``debug=true``, so the rules judge exactly what a job writes. Healthy jobs train
on the demo digits (from scratch and fine-tuned from an earlier job's weights, several
seeds, 3 and 10 epochs); each sabotaged job breaks one thing that one rule exists to catch.
The table shows, per job and rule, the step where the rule fired ('-' when it did not), then
per rule its false alarms on healthy jobs and whether it caught its sabotage.

    python benchmarks/rules_matrix.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "container"))

from debugger_overhead import timed_rules_and_report  # noqa: E402
from synthetic_data import write_colour_classes  # noqa: E402

HEALTHY_DIGITS = {"epochs": "3", "image_size": "32", "num_workers": "0"}


@dataclass
class Job:
    name: str
    hyperparameters: dict[str, str]
    data: Callable[[Path], None]
    #: the rules this job exists to trip; empty for a healthy job
    sabotage_of: tuple[str, ...] = ()
    model_patch: Callable | None = None
    pretrained_from: str | None = None
    result: dict = field(default_factory=dict)


def _zero_init(model):
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.zeros_(module.weight)
    return model


def _frozen_zero_head(model):
    """The classifier's weight matrix is all zero and frozen: no gradient reaches the backbone."""
    from torch import nn

    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.zeros_(head.weight)
    head.weight.requires_grad = False
    return model


def _colour_data(train: dict[str, int], valid: dict[str, int], signal: bool = True):
    def write(data_dir: Path) -> None:
        write_colour_classes(data_dir / "train", train, size=16, seed=1, signal=signal)
        write_colour_classes(data_dir / "valid", valid, size=16, seed=2, signal=signal)

    return write


def _balanced(per_class: int) -> dict[str, int]:
    return {name: per_class for name in ("a", "b", "c", "d")}


def _digits_data(source: Path):
    def link(data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        for split in ("train", "valid"):
            (data_dir / split).symlink_to(source / split, target_is_directory=True)

    return link


SMALL = {"image_size": "16", "batch_size": "8", "num_workers": "0", "augmentation": "none"}


def sabotaged_jobs() -> list[Job]:
    return [
        Job(
            "lr=10 (sgd)",
            {**SMALL, "epochs": "3", "learning_rate": "10", "optimizer": "sgd"},
            _colour_data(_balanced(6), _balanced(4)),
            sabotage_of=("exploding_tensor", "loss_not_decreasing"),
        ),
        Job(
            "zero init",
            {**SMALL, "epochs": "1"},
            _colour_data(_balanced(10), _balanced(4)),
            sabotage_of=("poor_weight_initialization",),
            model_patch=_zero_init,
        ),
        Job(
            "tiny noisy data, 12 epochs",
            {**SMALL, "epochs": "12", "learning_rate": "0.003"},
            _colour_data(_balanced(2), _balanced(4), signal=False),
            sabotage_of=("overfit", "overtraining"),
        ),
        Job(
            "class split 40/2/2/2 (x5)",
            {**SMALL, "epochs": "3"},
            _colour_data({"a": 200, "b": 10, "c": 10, "d": 10}, _balanced(4)),
            sabotage_of=("class_imbalance",),
        ),
        Job(
            "frozen all-zero head",
            {**SMALL, "epochs": "2"},
            _colour_data(_balanced(10), _balanced(4)),
            sabotage_of=("vanishing_gradient",),
            model_patch=_frozen_zero_head,
        ),
    ]


def healthy_jobs(digits: Path, seeds: list[int], epochs: list[int]) -> list[Job]:
    jobs = []
    for epoch_count in epochs:
        for seed in seeds:
            jobs.append(
                Job(
                    f"digits scratch seed={seed} epochs={epoch_count}",
                    {**HEALTHY_DIGITS, "seed": str(seed), "epochs": str(epoch_count)},
                    _digits_data(digits),
                )
            )
        jobs.append(
            Job(
                f"digits pretrained epochs={epoch_count}",
                {**HEALTHY_DIGITS, "epochs": str(epoch_count), "pretrained": "true"},
                _digits_data(digits),
                pretrained_from=jobs[0].name,
            )
        )
    return jobs


def run_job(job: Job, base: Path, weights: dict[str, Path]) -> dict:
    from classifier.training import program as train

    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({**job.hyperparameters, "debug": "true"}))
    job.data(base / "input" / "data")
    if job.pretrained_from:
        channel = base / "input" / "data" / "pretrained"
        channel.mkdir()
        shutil.copy(weights[job.pretrained_from], channel / "model.pt")
    os.environ["SAGEMAKER_BASE_DIR"] = str(base)
    build = train.build_model
    if job.model_patch is not None:
        train.build_model = lambda *args, **kwargs: job.model_patch(build(*args, **kwargs))
    started = time.perf_counter()
    try:
        with (
            timed_rules_and_report() as report_cpu,
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.suppress(SystemExit),
        ):
            train.main()
    finally:
        train.build_model = build
    report = json.loads((base / "output" / "data" / "report.json").read_text())
    history = report.get("history", [])
    return {
        "seconds": time.perf_counter() - started,
        "rules_report_cpu": sum(report_cpu),
        "fired": {r["rule"]: r["fired_at_step"] for r in report["rules"] if r["fired"]},
        "messages": {r["rule"]: r["message"] for r in report["rules"] if r["fired"]},
        "statuses": {r["rule"]: r["status"] for r in report["rules"]},
        "valid_accuracy": history[-1]["valid_accuracy"] if history else None,
        "model": base / "model" / "model.pt",
    }


def print_table(jobs: list[Job], rules: list[str]) -> None:
    short = {rule: rule.replace("_", " ")[:12] for rule in rules}
    print(f"{'job':34s} {'acc':>5s} {'rules+report':>12s} " + " ".join(f"{short[r]:>12s}" for r in rules))
    for job in jobs:
        fired = job.result["fired"]
        accuracy = job.result["valid_accuracy"]
        cells = " ".join(f"{str(fired.get(r, '-')):>12s}" for r in rules)
        tag = f" <- sabotage for {', '.join(job.sabotage_of)}" if job.sabotage_of else ""
        cpu = f"{job.result['rules_report_cpu']:.2f} CPU s"
        accuracy_text = f"{accuracy:5.2f}" if accuracy is not None else "  n/a"
        print(f"{job.name:34s} {accuracy_text} {cpu:>12s} {cells}{tag}")
    healthy = [j for j in jobs if not j.sabotage_of]
    print(f"\nper rule: false alarms on {len(healthy)} healthy jobs; caught its sabotage")
    for rule in rules:
        alarms = sum(rule in j.result["fired"] for j in healthy)
        own = [j for j in jobs if rule in j.sabotage_of]
        caught = ", ".join("yes" if rule in j.result["fired"] else "NO" for j in own) or "(no sabotage)"
        print(f"  {rule:28s} false alarms {alarms}/{len(healthy)}   caught: {caught}")
    for job in healthy:
        for rule, message in job.result["messages"].items():
            print(f"false alarm: {job.name}: {rule}: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--quick", action="store_true", help="one seed, 3 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = [0], [3]
    logging.disable(logging.INFO)
    from classifier.debugging.rules.debugger_rules import RULES
    from tools.demo_data import write_digits

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_digits(root / "digits")
        jobs = healthy_jobs(root / "digits", args.seeds, args.epochs) + sabotaged_jobs()
        weights: dict[str, Path] = {}
        for index, job in enumerate(jobs):
            job.result = run_job(job, root / f"job{index}", weights)
            weights[job.name] = job.result["model"]
            print(f"[{index + 1}/{len(jobs)}] {job.name}: {job.result['seconds']:.0f} s", file=sys.stderr)
    print_table(jobs, list(RULES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
