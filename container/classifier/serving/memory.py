"""Resident memory of the serving process, and the container's limit (multi-model budget).

Kept free of torch and Flask: the gunicorn master reads the default budget before forking.
"""

from __future__ import annotations

import ctypes
import errno
import gc
from pathlib import Path

# The rest of the limit is for the gunicorn master, images being decoded and Python itself.
BUDGET_FRACTION = 0.8


def current_rss() -> int:
    """Bytes of this process resident in RAM (what the kernel's OOM killer counts)."""
    import psutil

    return psutil.Process().memory_info().rss


def release_freed_memory() -> None:
    """Collect cycles, then hand freed heap pages back to the kernel so RSS really drops."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps its pages
        pass


# OSErrors that mean the machine ran out of something, not that the caller's files are bad.
RESOURCE_ERRNOS = frozenset({errno.ENOMEM, errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.EDQUOT})
# How torch (CPU and CUDA allocators) and OpenVINO (C++ std::bad_alloc) word an allocation that
# failed; they raise RuntimeError, not MemoryError.
OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "bad_alloc")


def is_resource_exhaustion(error: BaseException) -> bool:
    """True when ``error`` says memory, disk or file handles ran out (a model load then
    answers 507, so SageMaker unloads unused models and retries)."""
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, OSError):
        return error.errno in RESOURCE_ERRNOS
    message = str(error).lower()
    return isinstance(error, RuntimeError) and any(text in message for text in OUT_OF_MEMORY_MESSAGES)


def container_memory_bytes(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The container's memory limit (cgroup v2, then v1), else the machine's memory."""
    import psutil

    total = psutil.virtual_memory().total
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            raw = Path(cgroup_root, name).read_text().strip()
        except OSError:
            continue
        # "max" (v2) or a huge number (v1) mean no limit: the machine's memory applies.
        if raw.isdigit() and 0 < int(raw) < total:
            return int(raw)
    return total


def default_budget_mb(cgroup_root: str = "/sys/fs/cgroup") -> int:
    return int(container_memory_bytes(cgroup_root) * BUDGET_FRACTION / 2**20)
