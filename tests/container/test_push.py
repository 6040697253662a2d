"""build_and_push.sh for real: a push to a local registry, and the ECR path against moto.

Both push a small image (the base image under a test name) with --skip-build: the script's push
logic does not depend on the image, and a 6 GB push would only slow CI down.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from .conftest import REPO, free_port, run, wait_for

pytestmark = pytest.mark.docker

SCRIPT = str(REPO / "build_and_push.sh")
NAME = "push-test-tiny"
TAG = "t1"
MOTO_ACCOUNT = "123456789012"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def small_image(docker_engine) -> Iterator[str]:
    """The base image tagged NAME:TAG; removed (the tag only) afterwards."""
    base = run([str(REPO / "scripts" / "docker_host_prerequisites.sh")], timeout=900)
    run(["docker", "tag", base.stdout.strip().splitlines()[-1], f"{NAME}:{TAG}"], timeout=60)
    yield f"{NAME}:{TAG}"
    subprocess.run(["docker", "rmi", f"{NAME}:{TAG}"], capture_output=True, timeout=60)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return False
    return True


@pytest.fixture
def local_registry(tmp_path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 (the engine allows plain HTTP to loopback)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing: scripts/docker_host_prerequisites.sh --with-registry")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        "log:\n  level: warn\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/v2/"), 30, "the local registry")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_push_to_an_explicit_registry(small_image, local_registry):
    result = run(
        [SCRIPT, "--skip-build", "--name", NAME, "--tag", TAG, "--registry", local_registry],
        timeout=600,
    )
    remote = f"{local_registry}/{NAME}:{TAG}"
    try:
        pinned = result.stdout.strip().splitlines()[-1]
        assert re.fullmatch(rf"{re.escape(local_registry)}/{NAME}@sha256:[0-9a-f]{{64}}", pinned), pinned
        tags = requests.get(f"http://{local_registry}/v2/{NAME}/tags/list", timeout=10).json()
        assert TAG in tags["tags"]
        # The digest printed is the registry's: the manifest it serves for the tag.
        manifest = requests.head(
            f"http://{local_registry}/v2/{NAME}/manifests/{TAG}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        )
        assert manifest.headers["Docker-Content-Digest"] == pinned.rpartition("@")[2]
    finally:
        subprocess.run(["docker", "rmi", remote], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode on 127.0.0.1 (from .venv-sdk, where the client env installs it)."""
    candidates = [
        REPO / ".venv-sdk" / "bin" / "moto_server",
        Path(sys.executable).parent / "moto_server",
    ]
    binary = next((str(path) for path in candidates if path.exists()), shutil.which("moto_server"))
    if binary is None:
        pytest.fail("moto_server not found: run `make setup` (.venv-sdk installs moto[server])")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 60, "moto_server")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _aws_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A clean AWS environment: no profile or config of the machine leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


SHIM_DIGEST = "sha256:" + "ab" * 32


def _docker_shim(tmp_path: Path) -> tuple[Path, Path]:
    """A `docker` that records login/tag/push (ECR itself is not reachable) and runs the rest;
    its push ends as docker's does, with the digest line."""
    record = tmp_path / "docker-calls.txt"
    shim = tmp_path / "docker"
    shim.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        'case "$1" in\n'
        f'  login) echo "$* password=$(cat)" >>"{record}" ;;\n'
        f'  tag) echo "$*" >>"{record}" ;;\n'
        f'  push) echo "$*" >>"{record}"; echo "${{2##*:}}: digest: {SHIM_DIGEST} size: 528" ;;\n'
        f'  *) exec {shutil.which("docker")} "$@" ;;\n'
        "esac\n"
    )
    shim.chmod(0o755)
    return shim, record


def test_ecr_push_creates_the_repository_logs_in_and_pushes(small_image, moto_endpoint, tmp_path):
    shim, record = _docker_shim(tmp_path)
    env = _aws_env(
        tmp_path,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=moto_endpoint,
        DOCKER=str(shim),
    )
    registry = f"{MOTO_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    remote = f"{registry}/{NAME}:{TAG}"

    first = run(
        [SCRIPT, "--skip-build", "--name", NAME, "--tag", TAG, "--repository-tag", "team=vision"],
        timeout=300,
        env=env,
    )
    assert first.stdout.strip().splitlines()[-1] == f"{registry}/{NAME}@{SHIM_DIGEST}"
    assert "creating ECR repository" in first.stderr
    # Idempotent: the second push finds the repository.
    second = run([SCRIPT, "--skip-build", "--name", NAME, "--tag", TAG], timeout=300, env=env)
    assert "creating ECR repository" not in second.stderr

    ecr = boto3.client(
        "ecr",
        region_name=REGION,
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    repository = ecr.describe_repositories(repositoryNames=[NAME])["repositories"][0]
    assert repository["registryId"] == MOTO_ACCOUNT
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    tags = ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
    assert tags == [{"Key": "team", "Value": "vision"}]
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().split(":", 1)[1]

    calls = record.read_text().splitlines()
    assert calls[:3] == [
        f"login --username AWS --password-stdin https://{registry} password={password}",
        f"tag {NAME}:{TAG} {remote}",
        f"push {remote}",
    ]


@pytest.mark.parametrize(
    ("env_extra", "message"),
    [
        ({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}, "no AWS region"),
        ({"AWS_DEFAULT_REGION": REGION}, "no AWS credentials"),
    ],
    ids=["no-region", "no-credentials"],
)
def test_ecr_push_explains_missing_region_or_credentials(small_image, tmp_path, env_extra, message):
    env = _aws_env(tmp_path, **env_extra)
    result = run([SCRIPT, "--skip-build", "--name", NAME, "--tag", TAG], timeout=300, env=env, check=False)
    assert result.returncode != 0
    assert message in result.stderr
