"""Training throughput of the full ``train`` program against a bare PyTorch loop.

Same model, batch size, data, transform, DataLoader workers and torch threads; runs are
interleaved (bare, program, bare, program, ...) so machine noise hits both alike. The
ratio program/bare is the figure that matters (target >= 0.90 with the debugger hook off).

Usage: python benchmarks/training_bench.py [--rounds 2] [--epochs 2] [--model resnet18]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def bare_loop(data_dir: Path, args) -> float:
    """The loop every tutorial writes: ImageFolder, DataLoader, forward, backward, step."""
    import torch
    from torch import nn
    from torchvision import datasets

    from classifier.models import create_model
    from classifier.transforms import train_transform

    torch.manual_seed(0)
    dataset = datasets.ImageFolder(str(data_dir / "train"), train_transform(args.image_size, "none"))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
    )
    model = create_model(args.model, len(dataset.classes)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rates = []
    for _ in range(args.epochs):
        model.train()
        started, seen = time.perf_counter(), 0
        for images, targets in loader:
            images = images.to(memory_format=torch.channels_last)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), targets)
            loss.backward()
            optimizer.step()
            loss.item()
            seen += len(targets)
        rates.append(seen / (time.perf_counter() - started))
    return statistics.mean(rates)


def full_program(data_dir: Path, args, extra_hyperparameters: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "input/config").mkdir(parents=True)
        (base / "input/data").mkdir(parents=True)
        for channel in ("train", "valid"):
            (base / "input/data" / channel).symlink_to(data_dir / channel)
        hyperparameters = {
            "model": args.model,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "num_workers": args.num_workers,
            "augmentation": "none",
            "learning_rate": 0.001,
            "optimizer": "adam",
            **extra_hyperparameters,
        }
        (base / "input/config/hyperparameters.json").write_text(
            json.dumps({k: str(v) for k, v in hyperparameters.items()})
        )
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base)}
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "train")], env=env, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise SystemExit(f"train failed:\n{result.stdout}\n{result.stderr}")
        history = json.loads((base / "output/data/metrics.json").read_text())["history"]
        return statistics.mean(h["train_images_per_second"] for h in history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--data", type=Path, help="ImageFolder with train/ and valid/ (default: digits)")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data
        if data_dir is None:
            from tools.demo_data import write_digits

            data_dir = Path(tmp) / "digits"
            write_digits(data_dir)
        bare, program = [], []
        for round_index in range(args.rounds):
            bare.append(bare_loop(data_dir, args))
            program.append(full_program(data_dir, args, {"debug": "false"}))
            print(
                f"round {round_index + 1}: bare {bare[-1]:.1f} img/s, program {program[-1]:.1f} img/s",
                flush=True,
            )
    print(
        f"model={args.model} image_size={args.image_size} batch_size={args.batch_size} "
        f"num_workers={args.num_workers} torch_threads={torch.get_num_threads()} epochs={args.epochs}"
    )
    print(f"bare loop      : {statistics.median(bare):8.1f} images/s (median of {args.rounds})")
    print(f"train program  : {statistics.median(program):8.1f} images/s (median of {args.rounds}, hook off)")
    print(
        f"ratio program/bare = {statistics.median(program) / statistics.median(bare):.3f}  (target >= 0.90)"
    )


if __name__ == "__main__":
    main()
