"""The image: SageMaker's contract in its config, no wheels left in it, cache-friendly layers."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .conftest import REPO, run

pytestmark = pytest.mark.docker


def inspect(ref: str) -> dict:
    return json.loads(run(["docker", "image", "inspect", ref], timeout=60).stdout)[0]


def test_image_honours_the_sagemaker_contract(image):
    config = inspect(image)["Config"]
    assert config["Cmd"] == ["train"], "SDK local mode starts the image with no command"
    assert not config.get("Entrypoint"), "`docker run IMAGE serve` must run serve"
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONUNBUFFERED"] == "1"
    assert inspect(image)["Architecture"] == "amd64"

    # Wheels from the wheelhouse, the installers' caches and uv itself must not reach the image
    # (Debian's own ensurepip wheels in /usr/share/python-wheels belong to the base).
    probe = (
        "set -e; command -v train; command -v serve; test ! -e /opt/ml; "
        "test -z \"$(find /opt /tmp /root -name '*.whl' -print -quit)\"; "
        "test ! -e /root/.cache; test ! -e /tmp/build; test ! -e /opt/venv/bin/uv; "
        "python3 -c 'import torch, torchvision, smdebug, classifier.training.program, classifier.serving'"
    )
    result = run(["docker", "run", "--rm", "--network", "none", image, "sh", "-c", probe], timeout=300)
    assert result.stdout.split()[:2] == ["/opt/program/train", "/opt/program/serve"]


# Layers written after the dependencies: COPY classifier, COPY train serve, RUN compileall.
CODE_LAYERS = 3


def test_code_only_change_reuses_the_dependency_layers(image, tmp_path):
    """Rebuild from a copy of the tree with one code file changed: only the code layers differ."""
    context = tmp_path / "context"
    # The wheels stay where they are: the build fetches them over HTTP (--wheelhouse).
    shutil.copytree(
        REPO / "container", context / "container", ignore=shutil.ignore_patterns("__pycache__", "wheelhouse*")
    )
    (context / "scripts").mkdir()
    for name in ("train", "serve", ".dockerignore", "build_and_push.sh", "scripts/common.sh"):
        shutil.copy2(REPO / name, context / name)
    changed = context / "container" / "classifier" / "__init__.py"
    original = changed.read_text()
    changed.write_text(original + "\n# a code-only change\n")

    base = run([str(REPO / "scripts" / "docker_host_prerequisites.sh")], timeout=900)
    tag = "cache-test"
    ref = f"sagemaker-image-classifier:{tag}"
    try:
        result = run(
            [
                str(context / "build_and_push.sh"),
                "--no-push",
                "--wheelhouse",
                str(REPO / "container" / "wheelhouse"),
                "--tag",
                tag,
                "--base-image",
                base.stdout.strip().splitlines()[-1],
            ],
            timeout=1200,
        )
        old_layers = inspect(image)["RootFS"]["Layers"]
        new_layers = inspect(ref)["RootFS"]["Layers"]
        assert len(new_layers) == len(old_layers)
        assert new_layers[:-CODE_LAYERS] == old_layers[:-CODE_LAYERS], result.stderr[-3000:]
        assert new_layers[-CODE_LAYERS:] != old_layers[-CODE_LAYERS:]
    finally:
        subprocess.run(["docker", "rmi", ref], capture_output=True, timeout=120)
