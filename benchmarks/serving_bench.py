"""Serving benchmark: each inference engine against the PyTorch path, model-only and through ``./serve``.

It saves a ResNet-18 with 133 classes (random weights, speed does not depend on them; the
classifier head is scaled so the top class is not a near-tie, which makes the recorded bf16
parity meaningful for this model) and exports it as training does. It then measures, in one
run: each engine alone at batch 1 (model-only), the bare in-process pipeline (decode →
transform → forward → top-5), and ``./serve`` with its defaults under ``wrk`` (or ``ab``) at
each concurrency, once per engine, posting scikit-image's 451x300 ``chelsea`` JPEG. The
machine is shared and noisy: read the ratios, measured in the same run, not the absolute
figures.

Usage: python benchmarks/serving_bench.py [--duration 15] [--concurrency 1 4 16]
       [--engines torch openvino-fp32 openvino-auto] [--server-env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script (`python benchmarks/serving_bench.py`): the checkout is not on sys.path.
sys.path.insert(0, str(REPO))

from classifier.serving.serve import apply_openmp_defaults  # noqa: E402
from tests.helpers import free_port  # noqa: E402

ARCHITECTURE = "resnet18"
NUM_CLASSES = 133
IMAGE_SIZE = 224
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def chelsea_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


HEAD_SCALE = 8.0


def save_benchmark_model(base_dir: Path, body: bytes) -> dict:
    """The model directory, exported as training exports it; returns the recorded exports."""
    import torch
    from torchvision import transforms

    from classifier.artifacts import ModelSpec, save_model
    from classifier.inference.export import export_model
    from classifier.models import create_model
    from classifier.serving.predictor import decode_image
    from classifier.transforms import eval_transform

    torch.manual_seed(0)
    names = tuple(f"{i:03d}.breed_{i}" for i in range(1, NUM_CLASSES + 1))
    model = create_model(ARCHITECTURE, NUM_CLASSES).eval()
    with torch.no_grad():
        model.fc.weight.mul_(HEAD_SCALE)
    spec = ModelSpec(ARCHITECTURE, names, IMAGE_SIZE)
    model_dir = save_model(base_dir / "model", model.state_dict(), spec)
    # Parity images: random crops of the benchmark photo, each prepared by the eval transform.
    image = decode_image(body)
    vary = transforms.Compose(
        [transforms.RandomResizedCrop(300, scale=(0.2, 1.0)), transforms.ColorJitter(0.4, 0.4, 0.4)]
    )
    prepare = eval_transform(IMAGE_SIZE)
    images = [prepare(vary(image)) for _ in range(64)]
    calibration = [prepare(vary(image)) for _ in range(64)]  # int8 calibration: other crops
    threads = len(os.sched_getaffinity(0))
    return export_model(model, spec, model_dir, images, threads, calibration).exports


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def bare_pipeline(
    body: bytes,
    model_dir: Path,
    threads: int,
    seconds: float,
    batch: int = 1,
    channels_last: bool = False,
) -> dict:
    """Images/s and per-call latency of the pipeline with no server, on ``threads`` threads."""
    import torch

    from classifier.artifacts import load_model
    from classifier.serving.predictor import decode_image
    from classifier.transforms import eval_transform

    torch.set_num_threads(threads)
    model, spec = load_model(model_dir, "cpu")
    transform = eval_transform(spec.image_size, spec.mean, spec.std)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)

    def once():
        tensors = [transform(decode_image(body)) for _ in range(batch)]
        with torch.inference_mode():
            inputs = torch.stack(tensors).contiguous(memory_format=layout)
            probabilities = torch.softmax(model(inputs), dim=1)
        return torch.topk(probabilities, 5)

    for _ in range(3):
        once()
    latencies = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        begun = time.perf_counter()
        once()
        latencies.append((time.perf_counter() - begun) * 1000)
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) * batch / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }


def _to_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()
    return float(number) * _UNITS[unit]


def run_wrk(url: str, body_file: Path, concurrency: int, seconds: float, script: Path) -> dict:
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency",
        "--timeout", "10s", "-s", str(script), url,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file)}
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _to_ms(re.search(r"\s50%\s+(\S+)", output).group(1)),
        "p99_ms": _to_ms(re.search(r"\s99%\s+(\S+)", output).group(1)),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0),
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def run_ab(url: str, body_file: Path, concurrency: int, seconds: float) -> dict:
    command = [
        "ab", "-q", "-k", "-c", str(concurrency), "-t", str(int(seconds)), "-n", "1000000",
        "-p", str(body_file), "-T", "image/jpeg", url,
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", output)
    failed = int(re.search(r"Failed requests:\s+(\d+)", output).group(1))
    return {
        "rps": float(re.search(r"Requests per second:\s+([\d.]+)", output).group(1)),
        "p50_ms": float(re.search(r"\s50%\s+(\d+)", output).group(1)),
        "p99_ms": float(re.search(r"\s99%\s+(\d+)", output).group(1)),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + failed,
        "socket_errors": "",
    }


def wait_until_ready(url: str, process: subprocess.Popen, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"./serve exited with {process.returncode} before /ping answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"/ping did not answer 200 within {deadline_s} s")


def post(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, body, {"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


# What each ./serve run sets; "default" is the server as shipped: the engine and precision it picks.
ENGINES = {
    "torch": {"CLASSIFIER_INFERENCE_BACKEND": "torch"},
    "openvino fp32": {"CLASSIFIER_INFERENCE_BACKEND": "openvino", "CLASSIFIER_INFERENCE_PRECISION": "fp32"},
    "openvino bf16": {"CLASSIFIER_INFERENCE_BACKEND": "openvino", "CLASSIFIER_INFERENCE_PRECISION": "bf16"},
    "default": {},
}


def model_only(
    model_dir: Path, engine: str, precision: str, threads: int, body: bytes, seconds: float
) -> dict:
    """Images/s of the engine alone at batch 1 on the prepared benchmark photo."""
    import torch

    from classifier.artifacts import load_model
    from classifier.inference.backends import OpenVinoBackend, TorchBackend
    from classifier.serving.predictor import decode_image, fuse_for_inference
    from classifier.transforms import eval_transform

    torch.set_num_threads(threads)
    model, spec = load_model(model_dir)
    tensor = eval_transform(spec.image_size, spec.mean, spec.std)(decode_image(body))
    if engine == "torch":
        model = model.to(memory_format=torch.channels_last)
        backend = TorchBackend(fuse_for_inference(model, spec.image_size))
    else:
        exported = spec.exports["openvino"]
        backend = OpenVinoBackend(
            model_dir / exported["int8_file" if precision == "int8" else "file"], precision, threads
        )
    for _ in range(3):
        backend.logits([tensor])
    latencies = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        begun = time.perf_counter()
        backend.logits([tensor])
        latencies.append((time.perf_counter() - begun) * 1000)
    elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }


def serve_engine(args, tmp_dir: Path, overrides: dict, body: bytes, body_file: Path, script: Path) -> tuple:
    """``./serve`` with ``overrides`` under load at each concurrency; (results, engine line)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "CLASSIFIER_"))},
        "SAGEMAKER_BASE_DIR": str(tmp_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "CLASSIFIER_BIND_HOST": "127.0.0.1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **overrides,
    }
    log_path = tmp_dir / f"serve-{port}.log"
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(REPO / "serve")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    results = {}
    try:
        started = time.monotonic()
        wait_until_ready(f"{base_url}/ping", server)
        results["start_s"] = time.monotonic() - started
        for _ in range(5):
            post(f"{base_url}/invocations", body)
        for concurrency in args.concurrency:
            url = f"{base_url}/invocations"
            if args.tool == "wrk":
                results[concurrency] = run_wrk(url, body_file, concurrency, args.duration, script)
            else:
                results[concurrency] = run_ab(url, body_file, concurrency, args.duration)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    engine_lines = [line for line in log_path.read_text().splitlines() if "inference backend" in line]
    return results, engine_lines[0].split("inference backend ", 1)[-1] if engine_lines else "?"


def _row(name: str, result: dict, reference: float | None, errors="") -> str:
    ratio = f"{result['rps'] / reference:8.2f}" if reference else f"{'':8}"
    return (
        f"{name:44} {result['rps']:8.1f} {result['p50_ms']:8.1f} {result['p99_ms']:8.1f} "
        f"{ratio} {errors!s:>7}"
    )


def _print_targets(served: dict, concurrency: list[int]) -> None:
    torch_runs, default = served.get("torch", {}), served.get("default", {})
    fp32 = served.get("openvino fp32", {})
    for c in (1, 16):
        if c not in concurrency or c not in torch_runs:
            continue
        base = torch_runs[c]["rps"]
        if c in fp32:
            print(f"target c={c}: openvino fp32 >= 1.5x torch: {fp32[c]['rps'] / base:.2f}x")
        if c in default:
            ratio = default[c]["rps"] / base
            print(f"target c={c}: default engine >= 2.5x torch (reduced precision allowed): {ratio:.2f}x")
    if 16 in default:
        p99 = default[16]["p99_ms"]
        print(f"target c=16: default engine p99 < 500 ms: {p99:.0f} ms ({'met' if p99 < 500 else 'NOT met'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--bare-seconds", type=float, default=8)
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES), default=list(ENGINES))
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--tool", choices=("wrk", "ab"), default="wrk" if shutil.which("wrk") else "ab")
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

    overrides = dict(item.split("=", 1) for item in args.server_env)
    # The in-process rows run under the server's OpenMP settings (set before torch loads),
    # so the ratios compare the server with the same runtime, not two spin policies.
    for name, value in overrides.items():
        if name.startswith(("OMP_", "GOMP_")):
            os.environ[name] = value
    apply_openmp_defaults()

    cpus = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()[0]
    body = chelsea_jpeg()
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        tmp_dir = Path(tmp)
        if args.model_dir:
            shutil.copytree(args.model_dir, tmp_dir / "model")
            exports = json.loads((tmp_dir / "model" / "model_config.json").read_text()).get("exports", {})
        else:
            exports = save_benchmark_model(tmp_dir, body)
        body_file = tmp_dir / "chelsea.jpg"
        body_file.write_bytes(body)
        script = tmp_dir / "post.lua"
        script.write_text(WRK_SCRIPT)
        model_dir = tmp_dir / "model"
        print(
            f"{args.model_dir or f'{ARCHITECTURE}, {NUM_CLASSES} classes'}, body {len(body)} B JPEG "
            f"451x300, {cpus} cores, load generator {args.tool}; recorded parity: "
            f"{json.dumps(exports.get('openvino', {}).get('parity'))}",
            flush=True,
        )
        seconds = args.bare_seconds
        alone = {
            "torch fp32 (fused, channels-last)": model_only(model_dir, "torch", "fp32", cpus, body, seconds),
            "openvino fp32": model_only(model_dir, "openvino", "fp32", cpus, body, seconds),
            "openvino bf16": model_only(model_dir, "openvino", "bf16", cpus, body, seconds),
        }
        if "int8_file" in exports.get("openvino", {}):
            alone["openvino int8"] = model_only(model_dir, "openvino", "int8", cpus, body, seconds)
        bare = bare_pipeline(body, model_dir, cpus, seconds, channels_last=True)
        served, engine_used = {}, {}
        for name in args.engines:
            served[name], engine_used[name] = serve_engine(
                args, tmp_dir, {**ENGINES[name], **overrides}, body, body_file, script
            )
            print(f"  measured ./serve with {name}: {engine_used[name]}", flush=True)

    header = f"{'':44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs torch':>8} {'errors':>7}"
    print(f"\nmodel only, batch 1, {cpus} threads (img/s)\n{header}\n{'-' * len(header)}")
    torch_alone = alone["torch fp32 (fused, channels-last)"]["rps"]
    for name, result in alone.items():
        print(_row(name, result, torch_alone))
    print(_row(f"bare pipeline, torch, {cpus} threads (decode..top-5)", bare, torch_alone))
    print(f"\n./serve with defaults but the engine (req/s)\n{header}\n{'-' * len(header)}")
    for concurrency in args.concurrency:
        reference = served.get("torch", {}).get(concurrency, {}).get("rps")
        for name in args.engines:
            result = served[name][concurrency]
            label = f"c={concurrency:<3} {name}: {engine_used[name]}"[:44]
            print(_row(label, result, reference, result["errors"]))
    starts = ", ".join(f"{n} {served[n]['start_s']:.1f} s" for n in args.engines)
    print(f"\n./serve start to /ping 200: {starts}")
    _print_targets(served, args.concurrency)
    print(
        f"machine load average (1 min): {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end, "
        f"on {cpus} cores (above ~0.5, other processes took CPU time from this run)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"model_only": alone, "bare": bare, "engines": engine_used, "served": served}
    record["overrides"] = overrides
    args.output.write_text(json.dumps(record, indent=2, default=str))
    return 1 if any(r["errors"] for runs in served.values() for k, r in runs.items() if k != "start_s") else 0


if __name__ == "__main__":
    sys.exit(main())
