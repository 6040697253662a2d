"""A local endpoint: the image run on this machine exactly as SageMaker hosting runs it.

``docker run IMAGE serve`` with the unpacked model.tar.gz at /opt/ml/model, published on
127.0.0.1 only. A local endpoint outlives the command that made it (like a real one), so
``invoke --local``, ``update --local`` and ``delete --local`` find it again by its container name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier import archives
from classifier.constants import CUSTOM_ATTRIBUTES_HEADER, DEFAULT_PORT, MODEL_CONFIG_FILE
from classifier_client.config import AwsContext, ConfigurationError, parse_s3_uri
from classifier_client.endpoints import (
    DEFAULT_TOP_K,
    LOCAL_IMAGE,
    DeploySettings,
    content_type_for,
    read_image,
)

LOCAL_CONTAINER_PREFIX = "sm-local-"
LOCAL_LABEL = "sagemaker-image-classifier.endpoint"
LOCAL_MODEL_LABEL = "sagemaker-image-classifier.model-dir"
# The environment `deploy --local` gave the container, which `update --local` carries over.
LOCAL_ENV_LABEL = "sagemaker-image-classifier.environment"
# After an update's switch, how long the old container keeps taking requests sent to it.
DRAIN_S = 2.0
# How long an address lookup waits for an update's switch to finish.
SWITCH_S = 5.0


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        completed = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise ConfigurationError("local mode needs the docker CLI and a running engine") from error
    if check and completed.returncode != 0:
        raise ConfigurationError(
            f"docker {args[0]} failed: {completed.stderr.strip() or completed.stdout.strip()}"
        )
    return completed


def local_container_name(endpoint_name: str) -> str:
    return LOCAL_CONTAINER_PREFIX + endpoint_name


def prepare_model_dir(ctx: AwsContext | None, model_data: str, target: Path) -> None:
    """Unpack model.tar.gz (local path, file:// or s3://) or copy a model directory."""
    if model_data.startswith("file://"):
        model_data = model_data[len("file://") :]
    if model_data.startswith("s3://"):
        if ctx is None:
            raise ConfigurationError("an s3:// model needs AWS credentials")
        bucket, key = parse_s3_uri(model_data)
        archive = target.parent / "model.tar.gz"
        ctx.client("s3").download_file(bucket, key, str(archive))
        model_data = str(archive)
    source = Path(model_data).expanduser()
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    elif source.is_file() and tarfile.is_tarfile(source):
        try:
            archives.extract(source, target)
        except archives.ArchiveError as error:
            raise ConfigurationError(str(error)) from error
    else:
        raise ConfigurationError(f"{model_data} is neither a model.tar.gz nor a model directory")
    if not (target / MODEL_CONFIG_FILE).exists():
        raise ConfigurationError(f"{model_data} holds no {MODEL_CONFIG_FILE}: not a model this image trained")


@dataclass(frozen=True)
class _Container:
    """One serving container of a local endpoint, as ``docker run`` starts it."""

    name: str
    endpoint_name: str
    image: str
    environment: dict[str, str]
    port: int = 0

    def start(self, ctx: AwsContext | None, model_data: str) -> Path:
        """Unpack the model into a fresh state folder and run ``IMAGE serve`` on it."""
        state = Path(tempfile.mkdtemp(prefix=f"{local_container_name(self.endpoint_name)}-"))
        model_dir = state / "model"
        try:
            prepare_model_dir(ctx, model_data, model_dir)
            env_args = [arg for k, v in self.environment.items() for arg in ("-e", f"{k}={v}")]
            _docker(
                "run", "--detach", "--name", self.name,
                "--label", f"{LOCAL_LABEL}={self.endpoint_name}",
                "--label", f"{LOCAL_MODEL_LABEL}={state}",
                "--label", f"{LOCAL_ENV_LABEL}={json.dumps(self.environment)}",
                "--publish", f"127.0.0.1:{self.port or ''}:{DEFAULT_PORT}",
                "--volume", f"{model_dir}:/opt/ml/model:ro",
                *env_args,
                self.image, "serve",
            )  # fmt: skip
        except Exception:
            shutil.rmtree(state, ignore_errors=True)
            raise
        return state


def deploy_local(
    settings: DeploySettings,
    *,
    ctx: AwsContext | None = None,
    port: int = 0,
    startup_timeout: float = 180.0,
) -> dict[str, str]:
    """Run ``IMAGE serve`` like SageMaker hosting does; returns once /ping answers 200."""
    if settings.instance_count != 1:
        raise ConfigurationError("a local endpoint runs one container (--instance-count 1)")
    if settings.variants or settings.shadows or not settings.model_data:
        raise ConfigurationError("a local endpoint serves one model: --model-data, not --variant or --shadow")
    name = local_container_name(settings.endpoint_name)
    if _docker("ps", "-aq", "--filter", f"name=^{name}$").stdout.strip():
        raise ConfigurationError(f"local endpoint {settings.endpoint_name} exists; `delete --local` it first")
    container = _Container(
        name, settings.endpoint_name, settings.image_uri or LOCAL_IMAGE, dict(settings.environment), port
    )
    container.start(ctx, settings.model_data)
    try:
        url = _wait_until_healthy(name, startup_timeout)
    except Exception:
        delete_local(settings.endpoint_name)
        raise
    return {"endpoint": settings.endpoint_name, "container": name, "url": url}


def update_local(
    endpoint_name: str,
    model_data: str,
    *,
    image: str | None = None,
    environment: dict[str, str] | None = None,
    ctx: AwsContext | None = None,
    startup_timeout: float = 180.0,
    drain_s: float = DRAIN_S,
) -> dict[str, str]:
    """Replace the local endpoint's model with no failed request: start a second container
    with the new model (same image and environment unless changed), wait for its /ping, then
    switch the endpoint's name to it; the old one finishes what it was sent, then stops.

    The endpoint is found by its name (as SageMaker's is), so its address changes: ``invoke
    --local`` and :func:`local_url` follow the switch."""
    name = local_container_name(endpoint_name)
    old = _inspect(name)
    if old is None:
        raise ConfigurationError(f"no local endpoint {endpoint_name} (container {name}); `deploy --local` it")
    labels = old["Config"]["Labels"] or {}
    carried = json.loads(labels.get(LOCAL_ENV_LABEL) or "{}")
    stamp = time.strftime("%Y%m%d%H%M%S")
    new = _Container(
        f"{name}-next-{stamp}",
        endpoint_name,
        image or old["Config"]["Image"],
        {**carried, **(environment or {})},
    )
    state = new.start(ctx, model_data)
    try:
        _wait_until_healthy(new.name, startup_timeout)
    except Exception:
        _docker("rm", "--force", new.name, check=False)
        shutil.rmtree(state, ignore_errors=True)
        raise
    retired = f"{name}-retired-{stamp}"
    try:
        _docker("rename", name, retired)
    except ConfigurationError:
        _docker("rm", "--force", new.name, check=False)
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        _docker("rename", new.name, name)
    except ConfigurationError:
        # Put the old one back under the endpoint's name; the new one goes.
        _docker("rename", retired, name, check=False)
        _docker("rm", "--force", new.name, check=False)
        shutil.rmtree(state, ignore_errors=True)
        raise
    # Requests that looked the old address up just before the switch still reach it; then
    # SIGTERM lets gunicorn finish the requests in flight before the container stops.
    time.sleep(drain_s)
    _docker("stop", "--time", "30", retired, check=False)
    _remove(retired, labels.get(LOCAL_MODEL_LABEL, ""))
    return {
        "endpoint": endpoint_name,
        "container": name,
        "url": local_url(endpoint_name),
        "replaced": retired,
    }


def _inspect(name: str) -> dict[str, Any] | None:
    found = _docker("inspect", name, check=False)
    if found.returncode != 0:
        return None
    return json.loads(found.stdout)[0]


def _container_url(name: str) -> str | None:
    mapping = _docker("port", name, f"{DEFAULT_PORT}/tcp", check=False)
    if mapping.returncode != 0 or not mapping.stdout.strip():
        return None
    host_port = mapping.stdout.strip().splitlines()[0].rsplit(":", 1)[1]
    return f"http://127.0.0.1:{host_port}"


def local_url(endpoint_name: str, switch_s: float = SWITCH_S) -> str:
    """The local endpoint's address; during an update's switch (two renames) it is looked up
    again for up to ``switch_s`` seconds."""
    name = local_container_name(endpoint_name)
    deadline = time.monotonic() + switch_s
    while (url := _container_url(name)) is None:
        switching = _docker("ps", "-q", "--filter", f"name=^{name}-next-", check=False).stdout.strip()
        if not switching and (url := _container_url(name)) is not None:
            break  # the switch finished between the two lookups
        if not switching or time.monotonic() > deadline:
            raise ConfigurationError(
                f"no running local endpoint {endpoint_name} (container {name}); `deploy --local` it"
            )
        time.sleep(0.05)
    return url


def _wait_until_healthy(name: str, timeout: float) -> str:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _docker("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state in ("exited", "dead"):
            logs = _docker("logs", "--tail", "40", name, check=False)
            raise ConfigurationError(
                f"local endpoint container {name} exited while starting:\n"
                f"{(logs.stdout + logs.stderr).strip()}"
            )
        url = _container_url(name)
        try:
            if url and requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise ConfigurationError(f"local endpoint {name} did not answer /ping within {timeout:.0f}s")


def invoke_local(endpoint_name: str, image: Path, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
    """POST the image to the local container's /invocations, with SageMaker's headers."""
    import requests

    body = read_image(image)
    headers = {
        "Content-Type": content_type_for(image),
        "Accept": "application/json",
        CUSTOM_ATTRIBUTES_HEADER: f"top_k={top_k}",
    }
    try:
        response = requests.post(
            f"{local_url(endpoint_name)}/invocations", data=body, headers=headers, timeout=60
        )
    except requests.ConnectionError:
        # The address was looked up just before an update retired its container: once more.
        response = requests.post(
            f"{local_url(endpoint_name)}/invocations", data=body, headers=headers, timeout=60
        )
    if response.status_code != 200:
        raise ConfigurationError(
            f"local endpoint answered {response.status_code}: {response.text.strip()[:500]}"
        )
    return response.json()


def delete_local(endpoint_name: str) -> list[str]:
    """Stop and remove the container, and the unpacked model it served."""
    name = local_container_name(endpoint_name)
    found = _docker(
        "inspect", "--format", f'{{{{index .Config.Labels "{LOCAL_MODEL_LABEL}"}}}}', name,
        check=False,
    )  # fmt: skip
    if found.returncode != 0:
        raise ConfigurationError(f"no local endpoint {endpoint_name} (container {name})")
    _remove(name, found.stdout.strip())
    return [f"container {name}"]


def _remove(container: str, state: str) -> None:
    """The container, and its unpacked model (only a folder this module made)."""
    _docker("rm", "--force", container)
    prefix = container.split("-retired-")[0].split("-next-")[0]
    if state and Path(state).name.startswith(prefix):
        shutil.rmtree(state, ignore_errors=True)
