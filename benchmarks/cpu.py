"""The CPU a benchmark ran on, printed at the top of its output: figures differ by CPU (an AMX
Xeon runs bf16 several times faster than an AVX-512 EPYC), so each one names its own."""

from __future__ import annotations

import platform
from pathlib import Path

# The instruction sets the project's precision and inference choices depend on.
RELEVANT_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")


def describe_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``CPU: <model name> x<logical CPUs>; amx_bf16 yes, avx512_bf16 yes, ...``."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return f"CPU: {platform.processor() or platform.machine()} (no /proc/cpuinfo)"
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?"
    )
    count = sum(1 for line in text.splitlines() if line.startswith("processor"))
    flags = set(
        next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )
    listed = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in RELEVANT_FLAGS)
    return f"CPU: {model} x{count}; {listed}"
