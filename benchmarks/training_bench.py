"""Training throughput: the ``train`` program against a bare PyTorch loop, in fp32 and in the
precision ``auto`` picks, at 224 px / batch 32 and 64 px / batch 64, on dogImages-sized JPEGs.

Runs are interleaved (bare fp32, program fp32, bare auto, program auto, then again) so machine
noise hits all alike, and each counts its last epoch (the first pays for starting the loader's
workers and building the kernels). The figures that matter are ratios within one run:
- program auto / program fp32 at 224 px (goal >= 2.5 on an AMX CPU);
- program / bare loop in the same precision (goal >= 0.9).
It also prints the loader alone against the step (does decoding keep up?) and the
channels_last matrix behind ``classifier.training.precision``'s layout rule.

``--watching`` measures instead what watching a job costs: the program with TensorBoard event
files written (the default, a batch loss every ``log_steps``=20 steps and the end-of-job
figures) against ``CLASSIFIER_TENSORBOARD=off``, interleaved, in training images/s (goal >= 0.98)
and in the whole job's wall time.

Usage: python benchmarks/training_bench.py [--rounds 2] [--epochs 2] [--model resnet18] [--watching]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cpu import describe_cpu
from program_runner import run_train

# (image size, batch size, train images per class of 4): a fine-tuning size and a small one,
# each with enough steps per epoch that filling the loader's pipeline is a small share of it.
CONFIGS = ((224, 32, 48), (64, 64, 320))
# dogImages' JPEGs are about 500x375.
PHOTO_SIZE = (500, 375)


def write_photos(root: Path, classes: int, per_class: int, seed: int = 0) -> None:
    """JPEGs of dogImages' size: smooth colour fields per class plus texture, quality 90."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.uniform(40, 215, 3)
        for index in range(per_class):
            phase = rng.uniform(0, 6.3)
            field = np.sin(6 * xx + 4 * yy * (label + 1) + phase)[..., None] * 40
            pixels = base + field + rng.normal(0, 25, (height, width, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{index}.jpg", quality=90)


def _precision(name: str, image_size: int, model):
    import torch

    from classifier.training.precision import choose_precision, probe_model

    unsafe = probe_model(model, image_size, "bench")
    return choose_precision(name, torch.device("cpu"), image_size, unsafe)


def bare_loop(data_dir: Path, args, image_size: int, batch_size: int, precision_name: str) -> float:
    """The loop a tutorial writes (ImageFolder, DataLoader, forward, backward, step), with
    the autocast and layout the program would choose for ``precision_name``."""
    import torch
    from torch import nn
    from torchvision import datasets

    from classifier.models import create_model
    from classifier.transforms import train_transform

    torch.manual_seed(0)
    dataset = datasets.ImageFolder(str(data_dir / "train"), train_transform(image_size, "standard"))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
    )  # fmt: skip
    model = create_model(args.model, len(dataset.classes))
    precision = _precision(precision_name, image_size, model)
    model = model.to(memory_format=precision.memory_format())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rates = []
    for _ in range(args.epochs):
        model.train()
        started, seen = time.perf_counter(), 0
        for images, targets in loader:
            images = images.to(memory_format=precision.memory_format())
            optimizer.zero_grad(set_to_none=True)
            with precision.autocast(torch.device("cpu")):
                loss = loss_fn(model(images), targets)
            loss.backward()
            optimizer.step()
            loss.item()
            seen += len(targets)
        rates.append(seen / (time.perf_counter() - started))
    return rates[-1]


def full_program(
    data_dir: Path, args, image_size: int, batch_size: int, precision_name: str
) -> tuple[float, str]:
    """``./train`` on the same data; its own images/s (metrics.json) and chosen precision."""
    hyperparameters = {
        "model": args.model, "epochs": args.epochs, "batch_size": batch_size, "image_size": image_size,
        "num_workers": args.num_workers, "augmentation": "standard", "learning_rate": 0.001,
        "optimizer": "adam", "debug": "false", "inference_export": "none", "precision": precision_name,
    }  # fmt: skip
    metrics = run_train(data_dir, ("train", "valid"), hyperparameters)
    return metrics["history"][-1]["train_images_per_second"], metrics["precision"]["precision"]


def watching_overhead(data_dir: Path, args, image_size: int, batch_size: int) -> None:
    """Program auto with TensorBoard on and off, interleaved; medians and ratios."""
    hyperparameters = {
        "model": args.model, "epochs": args.epochs, "batch_size": batch_size, "image_size": image_size,
        "num_workers": args.num_workers, "augmentation": "standard", "debug": "false",
        "inference_export": "none",
    }  # fmt: skip
    runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    for round_index in range(args.rounds):
        for setting in ("off", "on"):
            metrics = run_train(
                data_dir, ("train", "valid"), hyperparameters, {"CLASSIFIER_TENSORBOARD": setting}
            )
            runs[setting].append((metrics["history"][-1]["train_images_per_second"], metrics["wall_seconds"]))
        print(f"  {args_line(image_size, batch_size)} round {round_index + 1}: {runs}", flush=True)
    rate = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
    wall = {k: statistics.median(w for _, w in v) for k, v in runs.items()}
    print(
        f"\n{args_line(image_size, batch_size)}: TensorBoard on {rate['on']:.1f} img/s, "
        f"off {rate['off']:.1f} img/s, "
        f"on/off {rate['on'] / rate['off']:.3f} (goal >= 0.98); job wall time on {wall['on']:.1f} s, "
        f"off {wall['off']:.1f} s, off/on {wall['off'] / wall['on']:.3f}"
    )


def loader_alone(data_dir: Path, args, image_size: int, batch_size: int) -> float:
    """Images/s of the program's own train loader with nothing else running."""
    import torch

    from classifier import image_folders
    from classifier.training import data, distributed
    from classifier.training.hyperparameters import parse_hyperparameters
    from classifier.transforms import train_transform

    hp = parse_hyperparameters(
        {"batch_size": batch_size, "num_workers": args.num_workers, "image_size": image_size}
    )
    classes = sorted(p.name for p in (data_dir / "train").iterdir())
    transform = train_transform(image_size)
    dataset = image_folders.ImageFolderDataset(data_dir / "train", classes, transform, "train")
    loader = data.make_loader(dataset, hp, distributed.DistributedContext(), train=True)
    torch.manual_seed(0)
    rates = []
    for _ in range(2):
        started, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch)
        rates.append(seen / (time.perf_counter() - started))
    return rates[-1]


def layout_matrix(args, steps: int = 6) -> list[str]:
    """Steps/s of forward + backward + step on random tensors, per precision and layout."""
    import torch
    from torch import nn

    from classifier.models import create_model

    lines = []
    for image_size, batch_size in ((*CONFIGS[0][:2],), (*CONFIGS[1][:2],), (32, 64)):
        rates = {}
        for dtype in (None, torch.bfloat16):
            for layout in (torch.contiguous_format, torch.channels_last):
                torch.manual_seed(0)
                model = create_model(args.model, 10).to(memory_format=layout)
                optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
                images = torch.randn(batch_size, 3, image_size, image_size).to(memory_format=layout)
                targets = torch.randint(0, 10, (batch_size,))
                started = None
                for step in range(steps + 2):
                    if step == 2:
                        started = time.perf_counter()
                    optimizer.zero_grad()
                    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                        loss = nn.functional.cross_entropy(model(images), targets)
                    loss.backward()
                    optimizer.step()
                rates[(dtype, layout)] = steps * batch_size / (time.perf_counter() - started)
        fp32, bf16 = rates[(None, torch.contiguous_format)], rates[(torch.bfloat16, torch.contiguous_format)]
        lines.append(
            f"  {image_size:3d} px / batch {batch_size:3d}: fp32 {fp32:7.1f} img/s, "
            f"fp32 channels_last {rates[(None, torch.channels_last)] / fp32:.2f}x, "
            f"bf16 {bf16 / fp32:.2f}x, "
            f"bf16 channels_last {rates[(torch.bfloat16, torch.channels_last)] / fp32:.2f}x"
        )
    return lines


def _report(image_size: int, batch_size: int, runs: dict, chosen: str, loader: float) -> None:
    median = {key: statistics.median(values) for key, values in runs.items()}
    print(f"\n{args_line(image_size, batch_size)}  (auto chose {chosen})")
    for name in ("fp32", "auto"):
        bare, program = median[("bare", name)], median[("program", name)]
        print(
            f"  {name:4s}: bare {bare:7.1f} img/s, program {program:7.1f} img/s, "
            f"program/bare {program / bare:.3f}  (goal >= 0.90)"
        )
    print(
        f"  program auto/fp32 = {median[('program', 'auto')] / median[('program', 'fp32')]:.2f}x, "
        f"bare auto/fp32 = {median[('bare', 'auto')] / median[('bare', 'fp32')]:.2f}x"
        + ("  (goal >= 2.5 at 224 px on AMX)" if image_size >= 224 else "")
    )
    print(
        f"  loader alone {loader:7.1f} img/s = {loader / median[('program', 'auto')]:.1f}x the auto step rate"
    )


def args_line(image_size: int, batch_size: int) -> str:
    return f"{image_size} px / batch {batch_size}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--num-workers", type=int, default=2, help="the program's default")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the train images per class")
    parser.add_argument("--watching", action="store_true", help="TensorBoard on against off instead")
    args = parser.parse_args()
    print(describe_cpu())
    if args.watching:
        _each_config(args, watching_overhead)
        return

    import torch

    print(f"model={args.model} torch_threads={torch.get_num_threads()} num_workers={args.num_workers} "
          f"epochs={args.epochs} rounds={args.rounds}")  # fmt: skip
    print("channels_last and bf16, step only (random tensors), ratios to fp32 contiguous:")
    for line in layout_matrix(args):
        print(line, flush=True)
    _each_config(args, _compare)


def _each_config(args, measure) -> None:
    """``measure(data_dir, args, image_size, batch_size)`` on fresh photos of each configuration."""
    for image_size, batch_size, per_class in CONFIGS:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp) / "photos"
            write_photos(data_dir / "train", 4, max(1, int(per_class * args.scale)))
            write_photos(data_dir / "valid", 4, 4, seed=1)
            measure(data_dir, args, image_size, batch_size)


def _compare(data_dir: Path, args, image_size: int, batch_size: int) -> None:
    runs: dict = {(kind, name): [] for kind in ("bare", "program") for name in ("fp32", "auto")}
    chosen = "?"
    for round_index in range(args.rounds):
        for name in ("fp32", "auto"):
            runs[("bare", name)].append(bare_loop(data_dir, args, image_size, batch_size, name))
            rate, chosen_now = full_program(data_dir, args, image_size, batch_size, name)
            runs[("program", name)].append(rate)
            chosen = chosen_now if name == "auto" else chosen
        print(
            f"  {args_line(image_size, batch_size)} round {round_index + 1}: "
            + ", ".join(f"{kind} {name} {values[-1]:.1f}" for (kind, name), values in runs.items()),
            flush=True,
        )
    _report(image_size, batch_size, runs, chosen, loader_alone(data_dir, args, image_size, batch_size))


if __name__ == "__main__":
    main()
