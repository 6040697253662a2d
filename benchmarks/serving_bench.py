"""Serving benchmark: the server against what this CPU can do in process, and each engine against PyTorch.

It saves a ResNet-18 with 133 classes and exports it as training does (random weights: speed
does not depend on them; the head's bias gives one class a wide margin, so the recorded
parity passes as it does for a trained model and the server runs the precision it would run
for one; that parity says nothing about accuracy). ``--model-dir`` takes a trained model
instead. It then measures, in one run, posting scikit-image's 451x300 ``chelsea`` JPEG:

- the in-process ceiling on the engine the server picks, no HTTP: decode + preprocess, the
  engine at batch 1 and at the server's batch size, the whole path one request at a time
  (the c=1 ceiling), and decode threads feeding the engine batches (the loaded ceiling);
- each engine alone at batch 1 against PyTorch;
- ``./serve`` with its defaults under ``wrk`` (or ``ab``) at each concurrency, once per
  engine, with its idle memory (master + workers) after warm-up and its start-up time;
- the same server with torch and torchvision loaded in every process, as it ran before it
  served without them: the memory baseline;
- with ``--image``, start-up to a green /ping of ``docker run IMAGE serve``, and batch transform:
  the whole ``sm-classifier transform --local`` over ``--transform-files`` JPEGs of mixed sizes
  against the in-process ceiling on the same files (benchmarks/transform_bench.py).

The machine is shared and noisy: read the ratios, measured in the same run, not the absolute
figures.

Usage: python benchmarks/serving_bench.py [--duration 15] [--concurrency 1 4 16]
       [--engines default torch ...] [--server-env NAME=VALUE ...] [--image IMAGE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script (`python benchmarks/serving_bench.py`): the checkout is not on sys.path.
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "container"))

from benchmarks import serving_load, transform_bench  # noqa: E402
from benchmarks.serving_load import percentile  # noqa: E402
from classifier.serving.serve import apply_openmp_defaults  # noqa: E402
from tests.helpers import free_port  # noqa: E402

ARCHITECTURE = "resnet18"
NUM_CLASSES = 133
IMAGE_SIZE = 224
# Logit margin of the winning class of the benchmark model (see the module docstring).
HEAD_MARGIN = 12.0
# What each ./serve run sets; "default" is the server as shipped: the engine and precision it picks.
ENGINES = {
    "torch": {"CLASSIFIER_INFERENCE_BACKEND": "torch"},
    "openvino fp32": {"CLASSIFIER_INFERENCE_BACKEND": "openvino", "CLASSIFIER_INFERENCE_PRECISION": "fp32"},
    "openvino bf16": {"CLASSIFIER_INFERENCE_BACKEND": "openvino", "CLASSIFIER_INFERENCE_PRECISION": "bf16"},
    "default": {},
}
GOAL_RATIO, GOAL_P99_MS, GOAL_RSS_FRACTION, GOAL_START_S = 0.8, 100.0, 0.4, 2.0


def chelsea_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def save_benchmark_model(base_dir: Path, body: bytes) -> dict:
    """The model directory, exported as training exports it; returns the recorded exports."""
    import torch
    from torchvision import transforms

    from classifier.artifacts import ModelSpec, save_model
    from classifier.inference.export import export_model
    from classifier.models import create_model
    from classifier.preprocessing import to_pixels
    from classifier.serving.predictor import decode_image

    torch.manual_seed(0)
    names = tuple(f"{i:03d}.breed_{i}" for i in range(1, NUM_CLASSES + 1))
    model = create_model(ARCHITECTURE, NUM_CLASSES).eval()
    with torch.no_grad():
        model.fc.bias[7] += HEAD_MARGIN
    spec = ModelSpec(ARCHITECTURE, names, IMAGE_SIZE)
    model_dir = save_model(base_dir / "model", model.state_dict(), spec)
    # Parity and calibration images: random crops of the benchmark photo, different ones.
    image = decode_image(body)
    vary = transforms.Compose(
        [transforms.RandomResizedCrop(300, scale=(0.2, 1.0)), transforms.ColorJitter(0.4, 0.4, 0.4)]
    )
    images = [to_pixels(vary(image), IMAGE_SIZE) for _ in range(64)]
    calibration = [to_pixels(vary(image), IMAGE_SIZE) for _ in range(64)]
    threads = len(os.sched_getaffinity(0))
    return export_model(model, spec, model_dir, images, threads, calibration).exports


def timed(call, seconds: float, images_per_call: int = 1) -> dict:
    """Images/s and per-call latency of ``call`` repeated for ``seconds`` after 3 warm-up calls."""
    for _ in range(3):
        call()
    latencies = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        begun = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - begun) * 1000)
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) * images_per_call / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }


def pipelined(engine, prepare, decoders: int, batch: int, engine_threads: int, seconds: float) -> dict:
    """Images/s with ``decoders`` threads preparing images for the engine, which takes up to
    ``batch`` of them at a time on ``engine_threads`` threads: the loaded server, minus HTTP."""
    import numpy as np

    from classifier.inference.backends import softmax

    engine.set_threads(engine_threads)
    prepared: queue.Queue = queue.Queue(maxsize=4 * batch)
    stop = threading.Event()

    def produce():
        while not stop.is_set():
            pixels = prepare()
            while not stop.is_set():
                try:
                    prepared.put(pixels, timeout=0.05)
                    break
                except queue.Full:
                    continue

    producers = [threading.Thread(target=produce, daemon=True) for _ in range(decoders)]
    for producer in producers:
        producer.start()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        chunk = [prepared.get()]
        while len(chunk) < batch and not prepared.empty():
            chunk.append(prepared.get_nowait())
        probabilities = softmax(engine.logits(np.stack(chunk)))
        np.argsort(-probabilities, axis=1)[:, :5]
        done += len(chunk)
    elapsed = time.perf_counter() - started
    stop.set()
    for producer in producers:
        producer.join()
    return {
        "rps": done / elapsed,
        "p50_ms": float("nan"),
        "p99_ms": float("nan"),
        "engine_threads": engine_threads,
    }


def in_process_ceiling(model_dir: Path, overrides: dict, body: bytes, cpus: int, batch: int, seconds: float):
    """The rows of the in-process ceiling on the engine the server picks; (rows, engine label)."""
    import numpy as np

    from classifier.artifacts import load_model_spec
    from classifier.inference import selection
    from classifier.inference.backends import softmax
    from classifier.inference.engines import load_engine
    from classifier.preprocessing import to_pixels
    from classifier.serving.predictor import decode_image

    spec = load_model_spec(model_dir)
    backend = overrides.get("CLASSIFIER_INFERENCE_BACKEND", selection.AUTO)
    choice = selection.choose(
        model_dir, spec, "cpu", backend, overrides.get("CLASSIFIER_INFERENCE_PRECISION", selection.AUTO)
    )
    engine = load_engine(model_dir, spec, "cpu", choice, threads=cpus)
    resize = spec.eval_resize

    def prepare():
        return to_pixels(decode_image(body, min_side=resize), spec.image_size, resize, spec.interpolation)

    one, many = prepare()[None], np.stack([prepare()] * batch)

    def whole_request():
        np.argsort(-softmax(engine.logits(prepare()[None]))[0])[:5]

    rows = {"decode + preprocess, 1 thread": timed(prepare, seconds)}
    rows[f"engine, batch 1, {cpus} threads"] = timed(lambda: engine.logits(one), seconds)
    rows[f"engine, batch {batch}, {cpus} threads (per image)"] = timed(
        lambda: engine.logits(many), seconds, batch
    )
    rows["c=1 ceiling: decode .. top-5, one at a time"] = timed(whole_request, seconds)
    loaded = max(
        (pipelined(engine, prepare, cpus, batch, threads, seconds) for threads in sorted({1, cpus})),
        key=lambda row: row["rps"],
    )
    label = f"loaded ceiling: {cpus} decoders + engine at batch {batch}, {loaded['engine_threads']} thr"
    rows[label] = loaded
    return rows, f"{choice.backend} {choice.precision}"


def engines_alone(model_dir: Path, exports: dict, body: bytes, cpus: int, seconds: float) -> dict:
    """Images/s of each engine alone at batch 1 on the prepared benchmark photo."""
    from classifier.artifacts import load_model_spec
    from classifier.inference import selection
    from classifier.inference.engines import load_engine
    from classifier.preprocessing import to_pixels
    from classifier.serving.predictor import decode_image

    spec = load_model_spec(model_dir)
    pixels = to_pixels(decode_image(body), spec.image_size)[None]
    openvino = exports.get("openvino", {})
    choices = {"torch fp32 (fused, channels-last)": selection.Choice(selection.TORCH, "fp32", "")}
    for precision in ("fp32", "bf16", "int8"):
        file = openvino.get("int8_file" if precision == "int8" else "file")
        if file:
            choices[f"openvino {precision}"] = selection.Choice(
                selection.OPENVINO, precision, "", model_dir / file
            )
    rows = {}
    for name, choice in choices.items():
        engine = load_engine(model_dir, spec, "cpu", choice, threads=cpus)
        rows[name] = timed(lambda engine=engine: engine.logits(pixels), seconds)
    return rows


def serve_engine(args, model_root: Path, overrides: dict, body: bytes, body_file: Path, script: Path) -> dict:
    """``./serve`` with ``overrides``: start-up, idle memory after warm-up, then load at each concurrency."""
    log_path = model_root / f"serve-{len(list(model_root.glob('serve-*.log')))}.log"
    with serving_load.running_server(model_root, free_port(), overrides, log_path) as server:
        url = f"{server.base_url}/invocations"
        for _ in range(5):
            serving_load.post(url, body)
        results = {"start_s": server.start_s, "memory": serving_load.server_memory(server.process.pid)}
        for concurrency in args.concurrency:
            if args.tool == "wrk":
                results[concurrency] = serving_load.run_wrk(
                    url, body_file, concurrency, args.duration, script
                )
            else:
                results[concurrency] = serving_load.run_ab(url, body_file, concurrency, args.duration)
    results["engine"] = server.engine_line()
    return results


def torch_layout_baseline(model_root: Path, overrides: dict, body: bytes) -> dict:
    """The idle memory and start-up of the same server with torch and torchvision in every process."""
    log_path = model_root / "serve-torch-layout.log"
    with serving_load.running_server(
        model_root, free_port(), overrides, log_path, torch_layout=True
    ) as server:
        for _ in range(5):
            serving_load.post(f"{server.base_url}/invocations", body)
        return {"start_s": server.start_s, "memory": serving_load.server_memory(server.process.pid)}


def _row(name: str, result: dict, reference: float | None, errors="", width: int = 52) -> str:
    ratio = f"{result['rps'] / reference:8.2f}" if reference else f"{'':8}"
    return (
        f"{name[:width]:{width}} {result['rps']:8.1f} {result['p50_ms']:8.1f} {result['p99_ms']:8.1f} "
        f"{ratio} {errors!s:>7}"
    )


def _header(title: str, ratio_name: str, width: int = 52) -> str:
    header = f"{'':{width}} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {ratio_name:>8} {'errors':>7}"
    return f"\n{title}\n{header}\n{'-' * len(header)}"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _memory_line(name: str, memory: dict) -> str:
    parts = ", ".join(f"{process} {mb:.0f}" for process, mb in memory["rss_mb"].items())
    return f"{name}: RSS {memory['rss_total_mb']:.0f} MB ({parts}); PSS {memory['pss_total_mb']:.0f} MB"


def report_ceiling(ceiling: dict, engine: str, served: dict, concurrency: list[int]) -> list[str]:
    """The in-process rows, the default server's rows against them, and the throughput goals."""
    print(_header(f"in process, no HTTP, on the engine the server picks ({engine})", "", 60))
    for name, result in ceiling.items():
        print(_row(name, result, None, width=60))
    batch1 = next(r["rps"] for n, r in ceiling.items() if n.startswith("c=1 ceiling"))
    loaded = next(r["rps"] for n, r in ceiling.items() if n.startswith("loaded ceiling"))
    default = served.get("default", {})
    print(
        _header("./serve as shipped, against the ceiling (c=1: the c=1 ceiling; else: loaded)", "ratio", 60)
    )
    for c in concurrency:
        if c in default:
            reference = batch1 if c == 1 else loaded
            print(_row(f"c={c:<3} {default['engine']}", default[c], reference, default[c]["errors"], 60))
    goals = []
    if 1 in default:
        ratio = default[1]["rps"] / batch1
        goals.append(f"c=1 >= {GOAL_RATIO}x the c=1 ceiling: {ratio:.2f}x ({_verdict(ratio >= GOAL_RATIO)})")
    if 16 in default:
        ratio, p99 = default[16]["rps"] / loaded, default[16]["p99_ms"]
        goals.append(
            f"c=16 >= {GOAL_RATIO}x the loaded ceiling: {ratio:.2f}x ({_verdict(ratio >= GOAL_RATIO)})"
        )
        # Little's law: 16 requests always in flight at the ceiling's rate wait 16 / rate on average.
        floor = 16 / loaded * 1000
        goals.append(
            f"c=16 p99 < {GOAL_P99_MS:.0f} ms: {p99:.0f} ms ({_verdict(p99 < GOAL_P99_MS)}); no server "
            f"on this CPU averages under 16 / loaded ceiling = {floor:.0f} ms at c=16"
        )
    return goals


def report_memory_and_start(served: dict, baseline: dict, container: list[float] | None) -> list[str]:
    default = served.get("default")
    print("\nidle server after warm-up, master + workers (MB)")
    if default:
        print(_memory_line("./serve as shipped", default["memory"]))
    print(_memory_line("the same with torch + torchvision in every process (before)", baseline["memory"]))
    starts = ", ".join(f"{name} {runs['start_s']:.2f} s" for name, runs in served.items())
    print(f"./serve start to /ping 200: {starts}; with torch in every process {baseline['start_s']:.2f} s")
    goals = []
    if default:
        fraction = default["memory"]["rss_total_mb"] / baseline["memory"]["rss_total_mb"]
        goals.append(
            f"idle RSS <= {GOAL_RSS_FRACTION:.0%} of the torch layout's: {fraction:.0%} "
            f"({_verdict(fraction <= GOAL_RSS_FRACTION)})"
        )
    if container:
        print("docker run IMAGE serve to /ping 200: " + ", ".join(f"{s:.2f} s" for s in container))
        worst = max(container)
        met = _verdict(worst <= GOAL_START_S)
        goals.append(f"container start <= {GOAL_START_S:.0f} s: worst {worst:.2f} s ({met})")
    else:
        goals.append("container start: not measured (pass --image IMAGE)")
    return goals


def report_engines(alone: dict, served: dict, concurrency: list[int], cpus: int) -> None:
    print(_header(f"each engine alone, batch 1, {cpus} threads", "vs torch"))
    torch_alone = alone["torch fp32 (fused, channels-last)"]["rps"]
    for name, result in alone.items():
        print(_row(name, result, torch_alone))
    print(_header("./serve with defaults but the engine (req/s)", "vs torch"))
    for c in concurrency:
        reference = served.get("torch", {}).get(c, {}).get("rps")
        for name, runs in served.items():
            print(_row(f"c={c:<3} {name}: {runs['engine']}", runs[c], reference, runs[c]["errors"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--bare-seconds", type=float, default=6, help="seconds per in-process row")
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=["default", "torch"])
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--tool", choices=("wrk", "ab"), default="wrk" if shutil.which("wrk") else "ab")
    parser.add_argument("--image", help="also time `docker run IMAGE serve` to a green /ping (3 runs)")
    parser.add_argument(
        "--transform-files", type=int, default=transform_bench.DEFAULT_FILES,
        help="with --image: JPEGs of the batch transform figure (0: skip it)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=REPO / "bench-results" / "serving.json")
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="a trained model directory with its exports (e.g. local_test/test_dir/model after make demo) "
        "instead of the random ResNet-18/133: its recorded parity decides the default precision",
    )
    args = parser.parse_args(argv)
    if not shutil.which(args.tool):
        parser.error(f"{args.tool} is not installed (apt-get install wrk apache2-utils)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.server_env)
    # The in-process rows run under the server's OpenMP settings, so the ratios compare the
    # server with the same runtime, not two spin policies.
    os.environ.update({k: v for k, v in overrides.items() if k.startswith(("OMP_", "GOMP_"))})
    apply_openmp_defaults()
    from classifier.serving.config import ServingSettings

    cpus, body = len(os.sched_getaffinity(0)), chelsea_jpeg()
    batch = ServingSettings.from_env({**os.environ, **overrides}).max_batch_size
    load_before = os.getloadavg()[0]
    from benchmarks.cpu import describe_cpu

    print(describe_cpu(), flush=True)
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        root = Path(tmp)
        if args.model_dir:
            shutil.copytree(args.model_dir, root / "model")
            exports = json.loads((root / "model" / "model_config.json").read_text()).get("exports", {})
        else:
            exports = save_benchmark_model(root, body)
        (root / "chelsea.jpg").write_bytes(body)
        (root / "post.lua").write_text(serving_load.WRK_SCRIPT)
        print(
            f"{args.model_dir or f'{ARCHITECTURE}, {NUM_CLASSES} classes'}, body {len(body)} B JPEG 451x300, "
            f"{cpus} cores, load generator {args.tool}; recorded parity: "
            f"{json.dumps(exports.get('openvino', {}).get('parity'))}",
            flush=True,
        )
        ceiling, engine = in_process_ceiling(root / "model", overrides, body, cpus, batch, args.bare_seconds)
        alone = engines_alone(root / "model", exports, body, cpus, args.bare_seconds)
        served = {}
        for name in args.engines:
            served[name] = serve_engine(
                args, root, {**ENGINES[name], **overrides}, body, root / "chelsea.jpg", root / "post.lua"
            )
            print(f"  measured ./serve with {name}: {served[name]['engine']}", flush=True)
        baseline = torch_layout_baseline(root, overrides, body)
        container = (
            serving_load.container_start_seconds(args.image, root, free_port()) if args.image else None
        )
        transform = None
        if args.image and args.transform_files:
            settings = ServingSettings.from_env({**os.environ, **overrides})
            transform = transform_bench.measure(
                args.image,
                root / "model",
                args.transform_files,
                cpus,
                batch,
                root / "transform",
                settings.workers,
            )

    report_engines(alone, served, args.concurrency, cpus)
    goals = report_ceiling(ceiling, engine, served, args.concurrency)
    goals += report_memory_and_start(served, baseline, container)
    if transform:
        goals += transform_bench.report(transform, batch)
    print("\ngoals:\n" + "\n".join(f"  {goal}" for goal in goals))
    print(
        f"machine load average (1 min): {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end, "
        f"on {cpus} cores (above ~0.5, other processes took CPU time from this run)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"ceiling": ceiling, "engines_alone": alone, "served": served, "torch_layout": baseline}
    record.update(container_start_s=container, transform=transform, overrides=overrides, goals=goals)
    args.output.write_text(json.dumps(record, indent=2, default=str))
    failed = any(runs[c]["errors"] for runs in served.values() for c in args.concurrency)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
