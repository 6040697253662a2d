"""Batch transform: classify a whole folder (an S3 prefix) with no endpoint left running.

On SageMaker this is one CreateTransformJob. ``--local`` runs the same thing on this
machine the way SageMaker runs it ("Custom Inference Code with Batch Transform": "SageMaker AI
runs the container as: docker run image serve"): start the container, ask it for
GET /execution-parameters, then POST every input file (or, with SplitType=Line, mini-batches
of its lines within MaxPayloadInMB) to /invocations, MaxConcurrentTransforms at a time,
and write ``<input name>.out`` next to the input's relative path.

SDK 3.x local mode has transform jobs too (sagemaker.core.local), but it cannot run this
image's: it copies the BatchStrategy that /execution-parameters answers (AWS's spelling,
``MULTI_RECORD``) and then accepts only ``MultiRecord``/``SingleRecord``, so it raises; it also
binds the fixed host port 8080 and sends one request at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, RemoteDisconnected
from pathlib import Path
from typing import Any

from classifier.constants import (
    BATCH_STRATEGY_ENV,
    DEFAULT_MAX_PAYLOAD_MB,
    MAX_DEFAULT_CPU_WORKERS,
    MAX_PAYLOAD_IN_MB_ENV,
    MODEL_SERVER_WORKERS_ENV,
)
from classifier_client.account_settings import AccountSettings, RequestSettings, refuse_secrets
from classifier_client.config import AwsContext, ConfigurationError, parse_s3_uri, unique_name, wait_with
from classifier_client.image import pin_image

logger = logging.getLogger(__name__)

SPLIT_TYPES = ("None", "Line")
BATCH_STRATEGIES = ("MultiRecord", "SingleRecord")
# CreateTransformJob: "MaxPayloadInMB ... The value of MaxPayloadInMB cannot be greater than 100 MB.
# If you specify the MaxConcurrentTransforms parameter, the value of (MaxConcurrentTransforms *
# MaxPayloadInMB) also cannot exceed 100 MB."
MAX_PAYLOAD_LIMIT_MB = 100
# The most MaxConcurrentTransforms the image's /execution-parameters can answer unasked: its
# worker count, one per GPU (SageMaker's largest instances have 8) or up to
# MAX_DEFAULT_CPU_WORKERS on CPUs (classifier.constants).
MAX_GPUS_PER_INSTANCE = 8
IMAGE_CONTENT_TYPE = "application/x-image"
JSONLINES_CONTENT_TYPE = "application/jsonlines"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"


@dataclass
class TransformSettings:
    input: str
    output: str
    # None: the newest image `push` made (classifier_client.image.pin_image).
    image_uri: str | None
    model_name: str | None = None
    model_data: str | None = None
    content_type: str = IMAGE_CONTENT_TYPE
    split_type: str = "None"
    batch_strategy: str | None = None
    max_payload_mb: int | None = None
    max_concurrent: int | None = None
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    environment: dict[str, str] = field(default_factory=dict)
    job_name: str = field(default_factory=lambda: unique_name("img-clf-transform"))
    # VPC, KMS keys, isolation and tags (docs/security.md); none by default.
    account: AccountSettings = field(default_factory=AccountSettings)

    def validate(self) -> None:
        refuse_secrets(
            {**self.account.transform(self.instance_type).environment, **self.environment}, "--env"
        )
        if self.split_type not in SPLIT_TYPES:
            raise ConfigurationError(f"--split-type must be one of {SPLIT_TYPES}")
        if self.batch_strategy is not None and self.batch_strategy not in BATCH_STRATEGIES:
            raise ConfigurationError(f"--batch-strategy must be one of {BATCH_STRATEGIES}")
        if self.split_type == "Line" and self.content_type not in (
            "application/jsonlines",
            "application/x-jsonlines",
        ):
            raise ConfigurationError(
                "--split-type Line splits records on newlines: use --content-type application/jsonlines "
                "(one base64 image per line); image files are sent whole (--split-type None)"
            )
        if self.max_payload_mb is not None and not 1 <= self.max_payload_mb <= MAX_PAYLOAD_LIMIT_MB:
            raise ConfigurationError(f"--max-payload-mb must be 1-{MAX_PAYLOAD_LIMIT_MB}")
        if self.max_concurrent is not None:
            if self.max_concurrent < 1:
                raise ConfigurationError("--max-concurrent-transforms must be at least 1")
            payload = self.payload_mb()
            if self.max_concurrent * payload > MAX_PAYLOAD_LIMIT_MB:
                raise ConfigurationError(
                    f"--max-concurrent-transforms {self.max_concurrent} x MaxPayloadInMB {payload} "
                    f"= {self.max_concurrent * payload} MB: CreateTransformJob allows at most "
                    f"{MAX_PAYLOAD_LIMIT_MB} MB (MaxConcurrentTransforms * MaxPayloadInMB); lower "
                    "--max-concurrent-transforms or --max-payload-mb"
                )

    def payload_mb(self) -> int:
        """MaxPayloadInMB as the job will have it: given, else what the container will answer
        (its SAGEMAKER_MAX_PAYLOAD_IN_MB, 6 MB by default, SageMaker's default too)."""
        if self.max_payload_mb is not None:
            return self.max_payload_mb
        try:
            return max(1, int(float(self.environment.get(MAX_PAYLOAD_IN_MB_ENV, DEFAULT_MAX_PAYLOAD_MB))))
        except ValueError:
            return DEFAULT_MAX_PAYLOAD_MB

    def max_concurrent_to_send(self) -> int | None:
        """MaxConcurrentTransforms for the request. Left out, "Amazon SageMaker checks the
        optional execution-parameters" (CreateTransformJob): the image answers its worker
        count, whose product with the payload could pass the 100 MB the API allows; where it
        could, the highest value within the limit is sent instead."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        payload = self.payload_mb()
        try:
            advertised = int(self.environment[MODEL_SERVER_WORKERS_ENV])
        except (KeyError, ValueError):
            advertised = max(MAX_DEFAULT_CPU_WORKERS, MAX_GPUS_PER_INSTANCE)
        if advertised * payload <= MAX_PAYLOAD_LIMIT_MB:
            return None
        return max(1, MAX_PAYLOAD_LIMIT_MB // payload)

    def server_environment(self) -> dict[str, str]:
        """What the container must accept for the mini-batches it will get (SageMaker sets the
        same variables in a transform container)."""
        env = dict(self.environment)
        if self.max_payload_mb is not None:
            env[MAX_PAYLOAD_IN_MB_ENV] = str(self.max_payload_mb)
        if self.batch_strategy is not None:
            env[BATCH_STRATEGY_ENV] = (
                "MULTI_RECORD" if self.batch_strategy == "MultiRecord" else "SINGLE_RECORD"
            )
        return env


# --- SageMaker -------------------------------------------------------------------------------


def create_transform_job(ctx: AwsContext, settings: TransformSettings, *, wait: bool) -> dict[str, Any]:
    """CreateTransformJob (and the Model first when given --model-data); wait if asked."""
    settings.validate()
    for uri in (settings.input, settings.output):
        if not uri.startswith("s3://"):
            raise ConfigurationError(
                f"{uri!r}: a transform job reads and writes S3 (a local folder needs --local)"
            )
        parse_s3_uri(uri)
    sagemaker = ctx.client("sagemaker")
    model_name = settings.model_name or _create_model(ctx, settings)
    account = settings.account.transform(settings.instance_type).warn()
    request: dict[str, Any] = {
        "TransformJobName": settings.job_name,
        "ModelName": model_name,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": settings.input}},
            "ContentType": settings.content_type,
            "SplitType": settings.split_type,
        },
        "TransformOutput": {"S3OutputPath": settings.output, "Accept": _accept_for(settings)},
        "TransformResources": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
        },
    }
    if settings.split_type == "Line":
        # One answer line per record line: the .out lines up with the input.
        request["TransformOutput"]["AssembleWith"] = "Line"
    # Left out, SageMaker asks the container (GET /execution-parameters); given, the container
    # is told the same through its environment so it accepts those mini-batches.
    for key, value in (
        ("BatchStrategy", settings.batch_strategy),
        ("MaxPayloadInMB", settings.max_payload_mb),
        ("MaxConcurrentTransforms", settings.max_concurrent_to_send()),
    ):
        if value is not None:
            request[key] = value
    environment = {**account.environment, **settings.server_environment()}
    if environment:
        request["Environment"] = environment
    _add_account(request, account)
    sagemaker.create_transform_job(**request)
    status = "InProgress"
    if wait:
        name = settings.job_name
        wait_with(sagemaker, "transform_job_completed_or_stopped", f"transform job {name} failed", 240,
                  TransformJobName=name)  # fmt: skip
        status = sagemaker.describe_transform_job(TransformJobName=name)["TransformJobStatus"]
    return {
        "transform_job": settings.job_name,
        "model": model_name,
        "status": status,
        "output": settings.output,
    }


def _add_account(request: dict[str, Any], account: RequestSettings) -> None:
    """The account's output and volume keys, and its tags, on a CreateTransformJob request."""
    if account.output_kms_key:
        request["TransformOutput"]["KmsKeyId"] = account.output_kms_key
    if account.volume_kms_key:
        request["TransformResources"]["VolumeKmsKeyId"] = account.volume_kms_key
    if account.tags:
        request["Tags"] = account.tag_list()


def _create_model(ctx: AwsContext, settings: TransformSettings) -> str:
    from classifier_client.endpoints import model_request

    if not settings.model_data or not settings.model_data.startswith("s3://"):
        raise ConfigurationError("transform needs --model-name, or --model-data s3://.../model.tar.gz")
    name = unique_name(settings.job_name)
    account = settings.account.model()
    container = {
        "Image": pin_image(ctx, settings.image_uri),
        "ModelDataUrl": settings.model_data,
        "Environment": dict(account.environment),
    }
    ctx.client("sagemaker").create_model(**model_request(name, container, ctx.require_role(), account))
    return name


# --- local ---------------------------------------------------------------------------------------


@dataclass
class _Plan:
    batch_strategy: str
    max_payload_bytes: int
    concurrency: int


def _plan(settings: TransformSettings, parameters: dict) -> _Plan:
    """The job's own settings win; then the container's /execution-parameters; then SageMaker's defaults."""
    strategy = settings.batch_strategy or str(parameters.get("BatchStrategy", "MultiRecord"))
    strategy = {"MULTI_RECORD": "MultiRecord", "SINGLE_RECORD": "SingleRecord"}.get(strategy, strategy)
    payload_mb = settings.max_payload_mb or int(parameters.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB))
    concurrency = settings.max_concurrent_to_send() or int(parameters.get("MaxConcurrentTransforms", 1))
    return _Plan(strategy, payload_mb * 2**20, max(1, concurrency))


def run_local(settings: TransformSettings, *, startup_timeout: float = 180.0) -> dict[str, Any]:
    """Run the transform with the image on this machine; folder in, ``*.out`` folder out."""
    import requests

    from classifier_client import endpoints, local_endpoints

    settings.validate()
    source, target = Path(settings.input).expanduser(), Path(settings.output).expanduser()
    if not source.is_dir():
        raise ConfigurationError(f"--input {settings.input} is not a folder (--local reads local files)")
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if not files:
        raise ConfigurationError(f"--input {settings.input} holds no files")
    deploy = endpoints.DeploySettings(
        image_uri=settings.image_uri,
        model_data=settings.model_data or "",
        endpoint_name=settings.job_name,
        environment=settings.server_environment(),
    )
    started = time.monotonic()
    url = local_endpoints.deploy_local(deploy, startup_timeout=startup_timeout)["url"]
    try:
        parameters = requests.get(f"{url}/execution-parameters", timeout=10)
        plan = _plan(settings, parameters.json() if parameters.status_code == 200 else {})
        client = InvocationsClient(url, settings.content_type, _accept_for(settings))
        with ThreadPoolExecutor(plan.concurrency) as pool:
            results = list(
                pool.map(lambda p: _transform_file(client, settings, plan, source, target, p), files)
            )
    finally:
        local_endpoints.delete_local(settings.job_name)
    failed = {name: error for name, error in results if error}
    return {
        "transform_job": settings.job_name,
        "output": str(target),
        "files": len(files),
        "completed": len(files) - len(failed),
        "failed": failed,
        "batch_strategy": plan.batch_strategy,
        "max_payload_mb": plan.max_payload_bytes // 2**20,
        "max_concurrent_transforms": plan.concurrency,
        "seconds": round(time.monotonic() - started, 1),
    }


def _transform_file(
    client: InvocationsClient,
    settings: TransformSettings,
    plan: _Plan,
    source: Path,
    target: Path,
    path: Path,
):
    """One input file -> ``<name>.out``; on failure ``<name>.out`` is not written (as on SageMaker)
    and the error goes to ``<name>.error``, so one bad file does not stop the others."""
    relative = path.relative_to(source).as_posix()
    out = target / f"{relative}.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        answers = [client.post(batch) for batch in _requests_of(path, settings, plan)]
    except RequestFailed as error:
        out.with_suffix(".error").write_text(json.dumps({"input": relative, **error.details}) + "\n")
        return relative, error.details
    separator = b"" if settings.split_type == "None" else b"\n"
    out.write_bytes(separator.join(a.rstrip(b"\n") if separator else a for a in answers) + separator)
    return relative, None


class RequestFailed(Exception):
    """A request of one input file failed; ``details`` (status, error) go to its ``.error`` file."""

    def __init__(self, details: dict):
        super().__init__(details.get("error"))
        self.details = details


def _requests_of(path: Path, settings: TransformSettings, plan: _Plan):
    """The request bodies for one file: the file whole, or its lines grouped per the strategy."""
    data = path.read_bytes()
    if settings.split_type == "None":
        if len(data) > plan.max_payload_bytes:
            raise RequestFailed(
                {"error": f"{len(data)} bytes is over MaxPayloadInMB ({plan.max_payload_bytes // 2**20})"}
            )
        yield data
        return
    batch: list[bytes] = []
    size = 0
    for line in (line for line in data.splitlines() if line.strip()):
        if len(line) + 1 > plan.max_payload_bytes:
            raise RequestFailed({"error": f"a record of {len(line)} bytes is over MaxPayloadInMB"})
        if batch and (plan.batch_strategy == "SingleRecord" or size + len(line) + 1 > plan.max_payload_bytes):
            yield b"\n".join(batch) + b"\n"
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield b"\n".join(batch) + b"\n"


class InvocationsClient:
    """POST /invocations over one keep-alive HTTP connection per calling thread.

    SageMaker's agent keeps its connections too; the standard library's client, because
    requests' per-call machinery cost the client more CPU than the model's own decode on the
    two cores they share. A kept-alive connection the server dropped is retried once on a new
    one; an answer the server sent before reading the whole body (413) is the request's error.
    """

    def __init__(self, url: str, content_type: str, accept: str):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port
        self.headers = {"Content-Type": content_type, "Accept": accept}
        self._local = threading.local()

    def post(self, body: bytes) -> bytes:
        """The answer's body; :class:`RequestFailed` with the status and error otherwise."""
        while True:
            connection, reused = self._connection()
            try:
                status, content = self._exchange(connection, body)
                break
            except (RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                self.close()
                # A kept-alive connection the server closed meanwhile (its keep-alive timeout):
                # nothing was answered, so once more on a new one. A fresh connection's failure
                # is the request's.
                if not reused:
                    raise RequestFailed({"error": f"{type(error).__name__}: {error}"}) from error
            except (OSError, HTTPException) as error:
                self.close()
                raise RequestFailed({"error": f"{type(error).__name__}: {error}"}) from error
        if status != 200:
            try:
                error_text = json.loads(content).get("error", content.decode(errors="replace"))
            except (ValueError, AttributeError):
                error_text = content.decode(errors="replace")
            raise RequestFailed({"status": status, "error": error_text})
        return content

    def close(self) -> None:
        """Close this thread's connection; its next request opens a new one."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

    def _connection(self) -> tuple[HTTPConnection, bool]:
        """This thread's connection, and whether it served a request before."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        self._local.connection = HTTPConnection(self.host, self.port, timeout=600)
        return self._local.connection, False

    def _exchange(self, connection: HTTPConnection, body: bytes) -> tuple[int, bytes]:
        try:
            connection.request("POST", "/invocations", body=body, headers=self.headers)
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer before it has read the whole body (413) and close: its
            # answer is what the caller needs, not the broken pipe.
            pass
        response = connection.getresponse()
        content = response.read()
        if response.will_close:
            self.close()
        return response.status, content


def _accept_for(settings: TransformSettings) -> str:
    return settings.content_type if settings.split_type == "Line" else "application/json"
