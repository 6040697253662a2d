"""Batch transform against the pipeline's ceiling, on the same files.

- The ceiling: in process, no HTTP. Decode and preprocessing on every core of this CPU feed
  the server's engine at the server's batch size, over every file once (as `make bench-serve`'s
  loaded ceiling does with one photo).
- The figure: images per second of wall time for the whole ``sm-classifier transform --local``
  command over a folder of the same JPEGs of mixed sizes: container start, /execution-parameters,
  every request at the concurrency the container advertises, every ``.out`` written.

Run by ``benchmarks/serving_bench.py --image IMAGE`` (``make bench-serve``), or alone:

    python benchmarks/transform_bench.py --image sagemaker-image-classifier:latest [--files 4000]
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "container"))

SDK_CLI = REPO / ".venv-sdk" / "bin" / "sm-classifier"
DEFAULT_FILES = 4000
# Sizes of the generated photos: from thumbnails to phone pictures.
MIN_SIDE, MAX_SIDE = 120, 1600
GOAL_RATIO = 0.8


def write_mixed_jpegs(folder: Path, count: int, seed: int = 0) -> int:
    """``count`` JPEGs of mixed sizes and aspect ratios: crops of scikit-image's sample photos,
    resized; returns their total bytes."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [Image.fromarray(p) for p in (data.chelsea(), data.astronaut(), data.coffee(), data.rocket())]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for index in range(count):
        photo = photos[index % len(photos)]
        left, top = int(rng.integers(0, photo.width // 4)), int(rng.integers(0, photo.height // 4))
        crop = photo.crop((left, top, photo.width - left // 2, photo.height - top // 2))
        size = (int(rng.integers(MIN_SIDE, MAX_SIDE)), int(rng.integers(MIN_SIDE, MAX_SIDE)))
        path = folder / f"{index:05d}.jpg"
        crop.resize(size).save(path, "JPEG", quality=int(rng.integers(70, 95)))
        total += path.stat().st_size
    return total


def file_ceiling(model_dir: Path, files: list[Path], cpus: int, batch: int) -> dict:
    """Images/s over ``files`` once: ``cpus`` threads read, decode and preprocess, the engine the
    server would pick takes up to ``batch`` prepared images at a time (best of 1 and ``cpus``
    engine threads)."""
    import numpy as np

    from classifier.artifacts import load_model_spec
    from classifier.inference import selection
    from classifier.inference.backends import softmax
    from classifier.inference.engines import load_engine
    from classifier.preprocessing import to_pixels
    from classifier.serving.predictor import decode_image

    spec = load_model_spec(model_dir)
    engine = load_engine(model_dir, spec, "cpu", selection.choose(model_dir, spec, "cpu"), threads=cpus)

    def run(engine_threads: int) -> float:
        engine.set_threads(engine_threads)
        todo: queue.Queue = queue.Queue()
        for path in files:
            todo.put(path)
        prepared: queue.Queue = queue.Queue(maxsize=4 * batch)

        def produce() -> None:
            while True:
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    return
                image = decode_image(path.read_bytes(), min_side=spec.eval_resize)
                prepared.put(to_pixels(image, spec.image_size, spec.eval_resize, spec.interpolation))

        producers = [threading.Thread(target=produce, daemon=True) for _ in range(cpus)]
        started = time.perf_counter()
        for producer in producers:
            producer.start()
        done = 0
        while done < len(files):
            chunk = [prepared.get()]
            while len(chunk) < batch and not prepared.empty():
                chunk.append(prepared.get_nowait())
            np.argsort(-softmax(engine.logits(np.stack(chunk))), axis=1)[:, :5]
            done += len(chunk)
        return len(files) / (time.perf_counter() - started)

    rates = {threads: run(threads) for threads in sorted({1, cpus})}
    best = max(rates, key=rates.__getitem__)
    return {"rps": rates[best], "engine_threads": best, "engine": f"{engine.name}"}


def transform_local(image: str, model_dir: Path, inputs: Path, outputs: Path, *extra: str) -> dict:
    """Wall time of the whole ``sm-classifier transform --local`` command, and what it printed."""
    import json

    command = [
        str(SDK_CLI), "transform", "--local", "--image", image, "--model-data", str(model_dir),
        "--input", str(inputs), "--output", str(outputs), *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"transform --local failed:\n{result.stderr[-3000:]}")
    summary = json.loads(result.stdout)
    return {"wall_s": wall, "summary": summary}


def _completed(run: dict, files: int) -> float:
    summary = run["summary"]
    if summary["completed"] != files:
        raise SystemExit(
            f"transform --local completed {summary['completed']} of {files}: {summary['failed']}"
        )
    return files / run["wall_s"]


def measure(image: str, model_dir: Path, files: int, cpus: int, batch: int, work: Path, workers: int) -> dict:
    """The ceiling, the command as shipped, and the command at one request per worker (what the
    container advertised before it sized MaxConcurrentTransforms for its batches)."""
    inputs = work / "inputs"
    size = write_mixed_jpegs(inputs, files)
    paths = sorted(inputs.iterdir())
    ceiling = file_ceiling(model_dir, paths, cpus, batch)
    shipped = transform_local(image, model_dir, inputs, work / "outputs")
    served = _completed(shipped, files)
    per_worker = transform_local(
        image, model_dir, inputs, work / "outputs-per-worker", "--max-concurrent-transforms", str(workers)
    )
    return {
        "files": files,
        "megabytes": size / 1e6,
        "ceiling_rps": ceiling["rps"],
        "ceiling_engine_threads": ceiling["engine_threads"],
        "transform_rps": served,
        "transform_wall_s": shipped["wall_s"],
        "ratio": served / ceiling["rps"],
        "per_worker_rps": _completed(per_worker, files),
        "per_worker_concurrency": workers,
        "advertised": {
            key: shipped["summary"][key]
            for key in ("batch_strategy", "max_payload_mb", "max_concurrent_transforms")
        },
    }


def report(result: dict, batch: int) -> list[str]:
    print(
        f"\nbatch transform over {result['files']} JPEGs of mixed sizes ({result['megabytes']:.0f} MB), "
        f"as the container advertises {result['advertised']}"
    )
    rows = [
        (f"in-process ceiling: decoders on every core + engine at batch {batch}", result["ceiling_rps"]),
        ("sm-classifier transform --local, whole command (wall)", result["transform_rps"]),
        (
            f"the same, {result['per_worker_concurrency']} requests at a time (one per worker)",
            result["per_worker_rps"],
        ),
    ]
    for name, rate in rows:
        print(f"  {name:<64} {rate:8.1f} img/s  {rate / result['ceiling_rps']:.2f}x")
    met = "met" if result["ratio"] >= GOAL_RATIO else "NOT met"
    ratio = f"{result['ratio']:.2f}x ({met})"
    return [f"transform --local >= {GOAL_RATIO}x the in-process ceiling on the same files: {ratio}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="the image transform --local runs")
    parser.add_argument("--model-dir", type=Path, help="a trained model (default: the serving benchmark's)")
    parser.add_argument("--files", type=int, default=DEFAULT_FILES)
    args = parser.parse_args(argv)
    from benchmarks.cpu import describe_cpu
    from benchmarks.serving_bench import chelsea_jpeg, save_benchmark_model
    from classifier.serving.config import ServingSettings
    from classifier.serving.serve import apply_openmp_defaults

    apply_openmp_defaults()
    cpus = len(os.sched_getaffinity(0))
    settings = ServingSettings.from_env(dict(os.environ))
    batch = settings.max_batch_size
    print(describe_cpu(), flush=True)
    with tempfile.TemporaryDirectory(prefix="transform-bench-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir
        if model_dir is None:
            save_benchmark_model(work, chelsea_jpeg())
            model_dir = work / "model"
        result = measure(args.image, model_dir, args.files, cpus, batch, work, settings.workers)
    for goal in report(result, batch):
        print(f"goal: {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
