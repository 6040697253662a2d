"""The serving benchmark's load side: ``./serve`` as a process, ``wrk``/``ab`` against it, its memory.

Used by ``benchmarks/serving_bench.py``; nothing here imports torch.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}
# The server as it was before it served without torch: every process had torch and torchvision
# loaded (the master imported them through the predictor module, workers inherited them).
TORCH_LAYOUT_COMMAND = (
    "import sys; sys.path.insert(0, 'container'); import torch, torchvision; "
    "from classifier.serving.serve import main; sys.exit(main())"
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


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
            raise RuntimeError(f"the server exited with {process.returncode} before /ping answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"/ping did not answer 200 within {deadline_s} s")


def post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, body, {"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB: PSS splits pages shared after fork among their sharers."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def server_memory(master_pid: int) -> dict:
    """RSS and PSS in MB of the gunicorn master and each worker (the master's children)."""
    processes = {"master": master_pid}
    processes.update({f"worker {i + 1}": pid for i, pid in enumerate(_children(master_pid))})
    memory = {name: _memory_kb(pid) for name, pid in processes.items()}
    return {
        "rss_mb": {name: rss / 1024 for name, (rss, _) in memory.items()},
        "pss_mb": {name: pss / 1024 for name, (_, pss) in memory.items()},
        "rss_total_mb": sum(rss for rss, _ in memory.values()) / 1024,
        "pss_total_mb": sum(pss for _, pss in memory.values()) / 1024,
    }


@dataclass
class RunningServer:
    base_url: str
    process: subprocess.Popen
    start_s: float
    log_path: Path

    def engine_line(self) -> str:
        lines = [line for line in self.log_path.read_text().splitlines() if "inference backend" in line]
        return lines[0].split("inference backend ", 1)[-1] if lines else "?"


@contextmanager
def running_server(model_root: Path, port: int, overrides: dict, log_path: Path, torch_layout: bool = False):
    """``./serve`` on ``model_root`` (its /opt/ml equivalent) until the block ends; ready at entry."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "CLASSIFIER_"))},
        "SAGEMAKER_BASE_DIR": str(model_root),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "CLASSIFIER_BIND_HOST": "127.0.0.1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **overrides,
    }
    command = [sys.executable, "-c", TORCH_LAYOUT_COMMAND] if torch_layout else [str(REPO / "serve")]
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"{base_url}/ping", process)
        yield RunningServer(base_url, process, time.monotonic() - started, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def container_start_seconds(image: str, model_root: Path, port: int, runs: int = 3) -> list[float]:
    """Seconds from ``docker run IMAGE serve`` to /ping 200, ``runs`` times (the container's own
    start included: what SageMaker waits for)."""
    seconds = []
    for _ in range(runs):
        command = [
            "docker", "run", "--rm", "-d", "-p", f"127.0.0.1:{port}:8080",
            "-v", f"{model_root / 'model'}:/opt/ml/model:ro", image, "serve",
        ]  # fmt: skip
        started = time.monotonic()
        container = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
        try:
            probe = subprocess.Popen(["docker", "wait", container], stdout=subprocess.DEVNULL)
            wait_until_ready(f"http://127.0.0.1:{port}/ping", probe)
            seconds.append(time.monotonic() - started)
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    return seconds
