"""Deploy, invoke and delete: a SageMaker endpoint, or the same container run locally.

On SageMaker an endpoint is three resources (Model -> EndpointConfig -> Endpoint), made
with ``sagemaker.core.resources``; ``delete`` removes all three. Locally the image runs
exactly as SageMaker hosting runs it — ``docker run IMAGE serve`` with the unpacked
model.tar.gz at /opt/ml/model — published on 127.0.0.1 only. A local endpoint outlives
the command that made it (like a real one), so ``invoke --local`` and ``delete --local``
find it again by its container name.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from classifier import archives
from classifier.constants import (
    CUSTOM_ATTRIBUTES_HEADER,
    DEFAULT_PORT,
    MODEL_CONFIG_FILE,
    MODEL_SERVER_TIMEOUT_ENV,
    MODEL_SERVER_WORKERS_ENV,
)
from classifier_client.account_settings import AccountSettings, RequestSettings, refuse_secrets
from classifier_client.config import AwsContext, ConfigurationError, parse_s3_uri, unique_name
from classifier_client.hosting import HostingOptions
from classifier_client.image import DEFAULT_IMAGE_NAME, DEFAULT_TAG, pin_image

logger = logging.getLogger(__name__)

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_TOP_K = 3
VARIANT_NAME = "AllTraffic"
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
FALLBACK_CONTENT_TYPE = "application/x-image"
LOCAL_CONTAINER_PREFIX = "sm-local-"
# What a local endpoint runs without an image named: the image `make image` builds.
LOCAL_IMAGE = f"{DEFAULT_IMAGE_NAME}:{DEFAULT_TAG}"
LOCAL_LABEL = "sagemaker-image-classifier.endpoint"
LOCAL_MODEL_LABEL = "sagemaker-image-classifier.model-dir"


def content_type_for(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), FALLBACK_CONTENT_TYPE)


def server_environment(workers: int | None, timeout: int | None, extra: dict[str, str]):
    """The container environment: worker count/timeout under the toolkit names, plus extras."""
    env = dict(extra)
    if workers is not None:
        if workers < 1:
            raise ConfigurationError("--workers must be at least 1")
        env[MODEL_SERVER_WORKERS_ENV] = str(workers)
    if timeout is not None:
        env[MODEL_SERVER_TIMEOUT_ENV] = str(timeout)
    return env


@dataclass
class DeploySettings:
    # None: the newest image `push` made (classifier_client.image.pin_image).
    image_uri: str | None
    model_data: str
    endpoint_name: str
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    environment: dict[str, str] = field(default_factory=dict)
    hosting: HostingOptions = field(default_factory=HostingOptions)
    # VPC, KMS keys, isolation and tags (docs/security.md); none by default.
    account: AccountSettings = field(default_factory=AccountSettings)

    def model_request(self, role: str, name: str) -> dict[str, Any]:
        """CreateModel: our image by digest with the model, the account's VPC, isolation, tags."""
        account = self.account.model()
        container = {
            "Image": self.image_uri,
            "ModelDataUrl": self.model_data,
            "Environment": {**account.environment, **self.hosting.server_environment(), **self.environment},
        }
        if self.hosting.multi_model:
            # ModelDataUrl is then the S3 prefix holding every model.tar.gz; TargetModel picks one.
            container["Mode"] = "MultiModel"
        return model_request(name, container, role, account)

    def endpoint_config_request(self, name: str) -> dict[str, Any]:
        """CreateEndpointConfig: the variant, the hosting options, the account's keys and tags."""
        account = self.account.endpoint_config([self.instance_type]).warn()
        variant = {
            "VariantName": VARIANT_NAME,
            "ModelName": name,
            "InitialInstanceCount": self.instance_count,
            "InstanceType": self.instance_type,
        }
        request: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": [self.hosting.variant(variant)],
            **self.hosting.endpoint_config_extras(),
        }
        if account.volume_kms_key and not self.hosting.serverless:
            request["KmsKeyId"] = account.volume_kms_key
        if "AsyncInferenceConfig" in request and account.output_kms_key:
            request["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"] = account.output_kms_key
        if account.tags:
            request["Tags"] = account.tag_list()
        return request


def model_request(
    name: str, container: dict[str, Any], role: str, account: RequestSettings
) -> dict[str, Any]:
    """A CreateModel request with the account's settings (deploy and transform share it; each
    refuses a secret environment before any call)."""
    request: dict[str, Any] = {"ModelName": name, "PrimaryContainer": container, "ExecutionRoleArn": role}
    if account.vpc:
        request["VpcConfig"] = account.vpc
    if account.network_isolation:
        request["EnableNetworkIsolation"] = True
    if account.tags:
        request["Tags"] = account.tag_list()
    return request


# --- SageMaker -----------------------------------------------------------------------------


def deploy(ctx: AwsContext, settings: DeploySettings, *, wait: bool = True) -> dict[str, str]:
    """Create Model, EndpointConfig and Endpoint; wait for InService unless told not to.

    Plain boto3 calls: the three requests are small, and the waiter reports a failed
    endpoint with its FailureReason.
    """
    _check_deploy(settings, wait)
    role = ctx.require_role()
    settings = replace(settings, image_uri=pin_image(ctx, settings.image_uri))
    sagemaker = ctx.client("sagemaker")
    hosting = settings.hosting
    # Model and config names change per deploy so an endpoint can be updated in place later.
    resource_name = unique_name(settings.endpoint_name)
    sagemaker.create_model(**settings.model_request(role, resource_name))
    sagemaker.create_endpoint_config(**settings.endpoint_config_request(resource_name))
    endpoint_tags = settings.account.endpoint().tag_list()
    sagemaker.create_endpoint(
        EndpointName=settings.endpoint_name,
        EndpointConfigName=resource_name,
        **({"Tags": endpoint_tags} if endpoint_tags else {}),
    )
    if wait:
        _wait_in_service(sagemaker, settings.endpoint_name)
    status = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)["EndpointStatus"]
    result = {
        "endpoint": settings.endpoint_name,
        "endpoint_config": resource_name,
        "model": resource_name,
        "status": status,
    }
    if hosting.autoscale:
        from classifier_client.hosting import enable_autoscaling

        result["autoscaling"] = enable_autoscaling(
            ctx, settings.endpoint_name, VARIANT_NAME, hosting, tags=endpoint_tags
        )
    return result


def _check_deploy(settings: DeploySettings, wait: bool) -> None:
    hosting = settings.hosting
    hosting.validate(settings.instance_type)
    # The account's settings are resolved, and refused where AWS would refuse them, offline.
    settings.account.endpoint_config([settings.instance_type])
    settings.account.endpoint()
    model = settings.account.model()
    refuse_secrets({**model.environment, **settings.environment}, "--env")
    if hosting.serverless and (model.vpc or model.network_isolation):
        raise ConfigurationError(
            "--serverless with a VPC or network isolation (flags or the defaults file): AWS, "
            'Serverless Inference feature exclusions: "VPC configuration, network isolation" are '
            "among the features Serverless Inference does not support; deploy on instances instead"
        )
    data = settings.model_data
    if hosting.multi_model:
        if not data.startswith("s3://") or not data.endswith("/"):
            raise ConfigurationError(
                f"--multi-model takes the s3://.../ prefix that holds the model.tar.gz files, got {data!r}"
            )
    elif not data.startswith("s3://") or not data.endswith(".tar.gz"):
        raise ConfigurationError(
            f"--model-data must be the s3://.../model.tar.gz of a training job, got "
            f"{data!r} (a local archive needs --local)"
        )
    if settings.instance_count < 1:
        raise ConfigurationError("--instance-count must be at least 1")
    if hosting.autoscale and not wait:
        # Application Auto Scaling registers only an InService variant.
        raise ConfigurationError("--autoscale waits for InService: drop --no-wait")


def _wait_in_service(sagemaker, endpoint_name: str) -> None:
    from botocore.exceptions import WaiterError

    try:
        # Creating an endpoint takes minutes: poll every 30 s for up to an hour.
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint_name, WaiterConfig={"Delay": 30, "MaxAttempts": 120}
        )
    except WaiterError as error:
        reason = error.last_response.get("FailureReason", "") if error.last_response else ""
        raise ConfigurationError(
            f"endpoint {endpoint_name} did not come InService: {reason or error}"
        ) from error


def invoke(
    ctx: AwsContext,
    endpoint_name: str,
    image: Path,
    top_k: int = DEFAULT_TOP_K,
    target_model: str | None = None,
) -> dict[str, Any]:
    """One image through sagemaker-runtime InvokeEndpoint; the server's JSON back.

    ``target_model``: on a multi-model endpoint, the model.tar.gz (relative to the endpoint's
    S3 prefix) to answer with; SageMaker loads it on first use.
    """
    body = _read_image(image)
    extra = {"TargetModel": target_model} if target_model else {}
    response = ctx.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint_name,
        Body=body,
        ContentType=content_type_for(image),
        Accept="application/json",
        CustomAttributes=f"top_k={top_k}",
        **extra,
    )
    return json.loads(response["Body"].read())


def delete(ctx: AwsContext, endpoint_name: str) -> list[str]:
    """Delete the endpoint, its config and its models; what is already gone is skipped."""
    from botocore.exceptions import ClientError

    sagemaker = ctx.client("sagemaker")
    deleted = []

    def gone(error: ClientError) -> bool:
        message = error.response.get("Error", {}).get("Message", "")
        return "Could not find" in message or "does not exist" in message

    try:
        config_name = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    except ClientError as error:
        if gone(error):
            raise ConfigurationError(f"no endpoint named {endpoint_name}") from error
        raise
    try:
        variants = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
        model_names = [v["ModelName"] for v in variants]
        variant_names = [v["VariantName"] for v in variants]
    except ClientError as error:
        if not gone(error):
            raise
        model_names, variant_names = [], [VARIANT_NAME]
    from classifier_client.hosting import disable_autoscaling

    # A scalable target outlives its endpoint: remove it (and its policy) first.
    deleted += disable_autoscaling(ctx, endpoint_name, variant_names)
    sagemaker.delete_endpoint(EndpointName=endpoint_name)
    deleted.append(f"endpoint {endpoint_name}")
    for kind, call, key, name in [
        ("endpoint config", sagemaker.delete_endpoint_config, "EndpointConfigName", config_name),
        *[("model", sagemaker.delete_model, "ModelName", m) for m in model_names],
    ]:
        try:
            call(**{key: name})
            deleted.append(f"{kind} {name}")
        except ClientError as error:
            if not gone(error):
                raise
    return deleted


# --- local ---------------------------------------------------------------------------------


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
    name = local_container_name(settings.endpoint_name)
    if _docker("ps", "-aq", "--filter", f"name=^{name}$").stdout.strip():
        raise ConfigurationError(f"local endpoint {settings.endpoint_name} exists; `delete --local` it first")
    state = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    model_dir = state / "model"
    try:
        prepare_model_dir(ctx, settings.model_data, model_dir)
        env_args = [arg for k, v in settings.environment.items() for arg in ("-e", f"{k}={v}")]
        _docker(
            "run", "--detach", "--name", name,
            "--label", f"{LOCAL_LABEL}={settings.endpoint_name}",
            "--label", f"{LOCAL_MODEL_LABEL}={state}",
            "--publish", f"127.0.0.1:{port or ''}:{DEFAULT_PORT}",
            "--volume", f"{model_dir}:/opt/ml/model:ro",
            *env_args,
            settings.image_uri or LOCAL_IMAGE, "serve",
        )  # fmt: skip
    except Exception:
        shutil.rmtree(state, ignore_errors=True)
        raise
    try:
        url = _wait_until_healthy(name, startup_timeout)
    except Exception:
        delete_local(settings.endpoint_name)
        raise
    return {"endpoint": settings.endpoint_name, "container": name, "url": url}


def local_url(endpoint_name: str) -> str:
    name = local_container_name(endpoint_name)
    mapping = _docker("port", name, f"{DEFAULT_PORT}/tcp", check=False)
    if mapping.returncode != 0 or not mapping.stdout.strip():
        raise ConfigurationError(
            f"no running local endpoint {endpoint_name} (container {name}); `deploy --local` it"
        )
    host_port = mapping.stdout.strip().splitlines()[0].rsplit(":", 1)[1]
    return f"http://127.0.0.1:{host_port}"


def _wait_until_healthy(name: str, timeout: float) -> str:
    import requests

    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        state = _docker("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state in ("exited", "dead"):
            logs = _docker("logs", "--tail", "40", name, check=False)
            raise ConfigurationError(
                f"local endpoint container {name} exited while starting:\n"
                f"{(logs.stdout + logs.stderr).strip()}"
            )
        try:
            url = url or local_url(name[len(LOCAL_CONTAINER_PREFIX) :])
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return url
        except (ConfigurationError, requests.RequestException):
            pass
        time.sleep(0.5)
    raise ConfigurationError(f"local endpoint {name} did not answer /ping within {timeout:.0f}s")


def invoke_local(endpoint_name: str, image: Path, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
    """POST the image to the local container's /invocations, with SageMaker's headers."""
    import requests

    response = requests.post(
        f"{local_url(endpoint_name)}/invocations",
        data=_read_image(image),
        headers={
            "Content-Type": content_type_for(image),
            "Accept": "application/json",
            CUSTOM_ATTRIBUTES_HEADER: f"top_k={top_k}",
        },
        timeout=60,
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
    _docker("rm", "--force", name)
    state = found.stdout.strip()
    if state and Path(state).name.startswith(name):
        shutil.rmtree(state, ignore_errors=True)
    return [f"container {name}"]


def _read_image(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error}") from error


def format_predictions(image: Path, result: dict[str, Any]) -> str:
    """``digit_0001.png: 3 (0.981), 8 (0.012), 5 (0.004)``."""
    predictions = result.get("predictions", [])
    ranked = ", ".join(f"{p['label']} ({p['probability']:.3f})" for p in predictions)
    return f"{image}: {ranked or 'no predictions'}"
