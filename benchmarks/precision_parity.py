"""Does the precision ``auto`` picks learn what fp32 learns? The same jobs in both, over seeds.

Two data sets: the digits demo (local_test's hyperparameters, 8 epochs at 32 px) and a harder
one made from it (each digit tinted a random colour, with noise, at 40 px). Each runs the real
``./train`` per seed in fp32 and in auto, and reads the test accuracy from metrics.json. The
gate: auto's mean test accuracy is at least fp32's mean minus fp32's seed-to-seed spread
(max - min).

Usage: python benchmarks/precision_parity.py [--seeds 1 2 3] [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from program_runner import REPO_ROOT, run_train

DEMO_HYPERPARAMETERS = REPO_ROOT / "local_test" / "test_dir" / "input" / "config" / "hyperparameters.json"


def write_hard_digits(digits: Path, out: Path, size: int = 40, seed: int = 0) -> None:
    """The digits tinted a random colour per image, noised, resized to ``size`` px."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for path in sorted(digits.glob("*/*/*.png")):
        grey = np.asarray(Image.open(path).convert("L").resize((size, size), Image.BILINEAR), float) / 255
        tint = rng.uniform(0.3, 1.0, 3)
        background = rng.uniform(0, 0.5, 3)
        pixels = background + grey[..., None] * (tint - background) + rng.normal(0, 0.12, (size, size, 3))
        target = out / path.relative_to(digits)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels.clip(0, 1) * 255).astype(np.uint8)).save(target)


def _row(name: str, precision: str, runs: list[dict]) -> tuple[float, float]:
    accuracies = [run["test"]["accuracy"] for run in runs]
    seconds = statistics.mean(h["train_seconds"] for run in runs for h in run["history"])
    chosen = {run["precision"]["precision"] for run in runs}
    spread = max(accuracies) - min(accuracies)
    print(
        f"| {name} | {precision} ({'/'.join(sorted(chosen))}) | "
        + " ".join(f"{a:.4f}" for a in accuracies)
        + f" | {statistics.mean(accuracies):.4f} | {spread:.4f} | {seconds:.1f} s |",
        flush=True,
    )
    return statistics.mean(accuracies), spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    from tools.demo_data import write_digits

    demo = json.loads(DEMO_HYPERPARAMETERS.read_text())
    print("| data set | precision (chosen) | test accuracy per seed | mean | spread | train s/epoch |")
    print("| --- | --- | --- | --- | --- | --- |")
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        digits, hard = Path(tmp) / "digits", Path(tmp) / "hard"
        write_digits(digits)
        write_hard_digits(digits, hard)
        for name, data, overrides in (
            ("digits, 32 px", digits, {}),
            ("tinted noisy digits, 40 px", hard, {"image_size": 40}),
        ):
            rows = {}
            for precision in ("fp32", "auto"):
                fixed = {
                    **demo, **overrides, "epochs": args.epochs, "precision": precision, "num_workers": 1,
                    "debug": "false", "inference_export": "none",
                }  # fmt: skip
                splits = ("train", "valid", "test")
                runs = [run_train(data, splits, {**fixed, "seed": seed}) for seed in args.seeds]
                rows[precision] = _row(name, precision, runs)
            (fp32_mean, fp32_spread), (auto_mean, _) = rows["fp32"], rows["auto"]
            verdicts.append(
                f"{name}: auto - fp32 = {auto_mean - fp32_mean:+.4f} (fp32 spread {fp32_spread:.4f}): "
                + ("within" if auto_mean >= fp32_mean - fp32_spread else "OUTSIDE")
            )
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
