"""The serving image's lock is the part of the runtime lock the server needs: the same pins and
hashes, nothing of the training stack. A test, so the two cannot drift apart."""

from __future__ import annotations

import importlib.util
import re

from tests.helpers import REPO_ROOT

LOCK = REPO_ROOT / "container" / "requirements.lock"
SERVE_REQUIREMENTS = REPO_ROOT / "container" / "requirements-serve.txt"
SERVE_LOCK = REPO_ROOT / "container" / "requirements-serve.lock"
TRAINING_STACK = ("torch", "torchvision", "triton", "smdebug", "nncf", "sagemaker-training", "mlflow-skinny")


def _subset_lock():
    spec = importlib.util.spec_from_file_location("subset_lock", REPO_ROOT / "scripts" / "subset_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_serve_lock_is_what_subset_lock_writes_from_the_runtime_lock():
    subset_lock = _subset_lock()
    expected = subset_lock.subset(
        LOCK.read_text(),
        SERVE_REQUIREMENTS.read_text(),
        "container/requirements.lock",
        "container/requirements-serve.txt",
    )
    assert SERVE_LOCK.read_text() == expected, (
        "run `make lock` (or scripts/subset_lock.py) after editing a lock"
    )


def test_the_serve_lock_pins_the_server_and_its_engine_and_no_training_package():
    pinned = dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", SERVE_LOCK.read_text(), re.MULTILINE))
    runtime = dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", LOCK.read_text(), re.MULTILINE))
    assert {"flask", "gunicorn", "openvino", "numpy", "pillow", "prometheus-client"} <= set(pinned)
    assert not set(TRAINING_STACK) & set(pinned)
    assert not [name for name in pinned if name.startswith("nvidia-")]
    assert all(runtime[name] == version for name, version in pinned.items())


def test_a_package_is_kept_when_a_kept_package_needs_it():
    subset_lock = _subset_lock()
    lock = (
        "a==1 \\\n    --hash=sha256:aa\n    # via -r req.txt\n"
        "b==2 \\\n    --hash=sha256:bb\n    # via\n    #   a\n    #   z\n"
        "c==3 \\\n    --hash=sha256:cc\n    # via b\n"
        "z==9 \\\n    --hash=sha256:zz\n    # via -r req.txt\n"
    )
    written = subset_lock.subset(lock, "a\n", "lock", "req.txt")
    assert re.findall(r"^(\w)==", written, re.MULTILINE) == ["a", "b", "c"]
