"""Load benchmark of the real ``./serve`` against the bare in-process pipeline, in one run.

It saves a ResNet-18 with 133 classes (random weights: speed does not depend on them),
measures the bare pipeline (decode → to_rgb → eval transform → forward → top-5) in this
process, then starts ``./serve`` with its default settings on 127.0.0.1 and drives it
with ``wrk`` (or ``ab``) at each concurrency, posting scikit-image's 451x300 ``chelsea``
photo as a JPEG. The machine is shared and noisy: read the ratios, which are measured
in the same run, rather than the absolute figures.

Usage: python benchmarks/serving_bench.py [--duration 15] [--concurrency 1 4 16]
       [--server-env NAME=VALUE ...]   (overrides, for experiments; none by default)
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
from collections import Counter
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


def save_benchmark_model(base_dir: Path) -> None:
    import torch

    from classifier.artifacts import ModelSpec, save_model
    from classifier.models import create_model

    torch.manual_seed(0)
    names = tuple(f"{i:03d}.breed_{i}" for i in range(1, NUM_CLASSES + 1))
    model = create_model(ARCHITECTURE, NUM_CLASSES)
    save_model(base_dir / "model", model.state_dict(), ModelSpec(ARCHITECTURE, names, IMAGE_SIZE))


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


def logged_invocations(log_path: Path) -> Counter:
    """Invocations logged so far, by worker pid."""
    pattern = r"\[(\d+)\] \[INFO\] classifier\.serving\.requests: POST"
    return Counter(re.findall(pattern, log_path.read_text()))


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--bare-seconds", type=float, default=8)
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--tool", choices=("wrk", "ab"), default="wrk" if shutil.which("wrk") else "ab")
    parser.add_argument("--output", type=Path, default=REPO / "bench-results" / "serving.json")
    args = parser.parse_args(argv)
    if not shutil.which(args.tool):
        parser.error(f"{args.tool} is not installed (apt-get install wrk apache2-utils)")

    overrides = dict(item.split("=", 1) for item in args.server_env)
    # The bare pipeline runs under the server's OpenMP settings (set before torch loads),
    # so the ratios compare the server with the same runtime, not two spin policies.
    for name, value in overrides.items():
        if name.startswith(("OMP_", "GOMP_")):
            os.environ[name] = value
    apply_openmp_defaults()
    openmp = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_"))}

    cpus = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()[0]
    body = chelsea_jpeg()
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        tmp_dir = Path(tmp)
        save_benchmark_model(tmp_dir)
        body_file = tmp_dir / "chelsea.jpg"
        body_file.write_bytes(body)
        script = tmp_dir / "post.lua"
        script.write_text(WRK_SCRIPT)

        print(
            f"{ARCHITECTURE}, {NUM_CLASSES} classes, body {len(body)} B JPEG 451x300, "
            f"{cpus} cores, load generator {args.tool}",
            flush=True,
        )
        model_dir = tmp_dir / "model"
        seconds = args.bare_seconds
        bare = {f"bare, {cpus} thread(s)": bare_pipeline(body, model_dir, cpus, seconds)}
        # The server runs the model channels-last; these rows show what that alone gains.
        bare[f"bare, {cpus} thread(s), channels-last"] = bare_pipeline(
            body, model_dir, cpus, seconds, channels_last=True
        )
        if cpus > 1:
            bare["bare, 1 thread"] = bare_pipeline(body, model_dir, 1, seconds)
        bare["bare batch-8, 1 thread, ch-last (/img)"] = bare_pipeline(
            body, model_dir, 1, seconds, batch=8, channels_last=True
        )

        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "CLASSIFIER_"))},
            "SAGEMAKER_BASE_DIR": str(tmp_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "CLASSIFIER_BIND_HOST": "127.0.0.1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **overrides,
        }
        log_path = tmp_dir / "serve.log"
        base_url = f"http://127.0.0.1:{port}"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [str(REPO / "serve")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        served = {}
        try:
            wait_until_ready(f"{base_url}/ping", server)
            for _ in range(5):
                post(f"{base_url}/invocations", body)
            for concurrency in args.concurrency:
                url = f"{base_url}/invocations"
                before = logged_invocations(log_path)
                if args.tool == "wrk":
                    result = run_wrk(url, body_file, concurrency, args.duration, script)
                else:
                    result = run_ab(url, body_file, concurrency, args.duration)
                # Keep-alive pins each wrk connection to the worker that accepted it.
                logged = logged_invocations(log_path) - before
                result["per_worker"] = sorted(logged.values(), reverse=True)
                served[f"serve, concurrency {concurrency}"] = result
                print(f"  measured concurrency {concurrency}", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        log_lines = log_path.read_text().splitlines()
        startup = [line for line in log_lines if "starting to serve" in line]
        # Measured again: how much the machine's load moved while the server ran.
        bare[f"bare, {cpus} thread(s), after"] = bare_pipeline(body, model_dir, cpus, seconds)
    reference = (bare[f"bare, {cpus} thread(s)"]["rps"] + bare[f"bare, {cpus} thread(s), after"]["rps"]) / 2
    ceiling = bare["bare batch-8, 1 thread, ch-last (/img)"]["rps"] * cpus

    print(startup[0].split(": ", 1)[-1] if startup else "(no startup line in the log)")
    print(f"overrides: {overrides or 'none (server defaults)'}; OpenMP: {openmp}")
    spread = {name.split(", ")[-1]: result["per_worker"] for name, result in served.items()}
    print(f"requests served by each worker: {spread}")
    print(
        f"machine load average (1 min): {load_before:.1f} at start, {os.getloadavg()[0]:.1f} "
        f"at end, on {cpus} cores (above ~0.5, other processes took CPU time from this run)"
    )
    print(
        f"vs bare: req/s over the mean of the two bare {cpus}-thread runs ({reference:.1f}/s); "
        f"{cpus} cores each running channels-last batch-8 on 1 thread: ~{ceiling:.1f}/s"
    )
    header = f"{'':40} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'errors':>7}"
    print(header)
    print("-" * len(header))
    after = f"bare, {cpus} thread(s), after"
    rows = {**{k: v for k, v in bare.items() if k != after}, **served, after: bare[after]}
    for name, result in rows.items():
        errors = result.get("errors", "")
        print(
            f"{name:40} {result['rps']:8.1f} {result['p50_ms']:8.1f} {result['p99_ms']:8.1f} "
            f"{result['rps'] / reference:8.2f} {errors!s:>7}"
        )
    for concurrency, name in ((1, "serve, concurrency 1"), (16, "serve, concurrency 16")):
        if name in served:
            result = served[name]
            target = 27 if concurrency == 1 else 40
            met = result["rps"] >= target and (concurrency == 1 or result["p99_ms"] < 500)
            extra = "" if concurrency == 1 else " and p99 < 500 ms"
            print(
                f"target concurrency {concurrency}: >= {target} req/s{extra}: {'met' if met else 'NOT met'}"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"overrides": overrides, **bare, **served}, indent=2))
    failed = any(result["errors"] for result in served.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
