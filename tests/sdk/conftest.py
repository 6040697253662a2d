"""SDK-side fixtures: moto in server mode on 127.0.0.1, request recording, local-mode data.

Every AWS call the client makes goes to a moto server on loopback (``AWS_ENDPOINT_URL``),
with fake credentials, so nothing can reach AWS. A recorder registered on the client's
boto3 session captures each operation's parameters *before* botocore validates them
against the service model, so a test sees exactly what would be sent to SageMaker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from classifier.opt_ml import write_job_config
from tests.helpers import REPO_ROOT, container_env_args, share_cores_among_workers, write_image_folder

RUNTIME_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
ROLE_NAME = "ClassifierSageMakerExecution"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture(autouse=True)
def offline_aws_environment(monkeypatch, tmp_path_factory):
    """Fake credentials and region; no profile, no SDK telemetry, no stray config files."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "SAGEMAKER_", "CLASSIFIER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    config = tmp_path_factory.getbasetemp() / "sagemaker-config.yaml"
    config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    # moto has no iam:SimulatePrincipalPolicy; the SDK's documented switch skips that check.
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class RecordedCalls:
    """(service, operation, params) of every API call, in order."""

    calls: list[tuple[str, str, dict]] = field(default_factory=list)

    def record(self, params, model, **_):
        self.calls.append(
            (
                model.service_model.service_name,
                model.name,
                json.loads(
                    json.dumps(params, default=lambda v: v.decode() if isinstance(v, bytes) else str(v))
                ),
            )
        )

    def operations(self) -> list[str]:
        return [operation for _, operation, _ in self.calls]

    def one(self, operation: str) -> dict:
        found = [params for _, name, params in self.calls if name == operation]
        assert len(found) == 1, f"expected one {operation}, got {len(found)}: {self.operations()}"
        return found[0]


# The image the cloud tests name by tag: pushed to moto's ECR, so the client can pin it.
IMAGE_REPOSITORY = "sagemaker-image-classifier"
IMAGE_TAGS = ("v1", "latest")


@dataclass
class FakeAws:
    endpoint: str
    role_arn: str
    recorded: RecordedCalls
    contexts: list = field(default_factory=list)
    digests: dict = field(default_factory=dict)
    # Operation -> function(params) -> response, for the APIs moto lacks (UpdateEndpoint):
    # botocore has validated the parameters against the service model before it is called.
    answers: dict = field(default_factory=dict)

    def answer(self, model, params, **_):
        respond = self.answers.get(model.name)
        if respond is None:
            return None
        from botocore.awsrequest import AWSResponse

        parsed = respond(params)
        return AWSResponse(self.endpoint, 400 if "Error" in parsed else 200, {}, None), parsed

    def boto3(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint)

    def push_image(self, repository: str, tag: str) -> str:
        """An image manifest put into moto's ECR under ``repository:tag``; returns its digest."""
        ecr = self.boto3("ecr")
        try:
            ecr.create_repository(repositoryName=repository)
        except ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        # moto's digest is the SHA-256 of the layer digests: one layer per tag.
        layer = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1}
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [{**layer, "digest": f"sha256:{tag.encode().hex():0>64}"}],
        }
        image = ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
        digest = image["image"]["imageId"]["imageDigest"]
        self.digests[f"{repository}:{tag}"] = digest
        return digest

    def pinned(self, reference: str) -> str:
        """``reference`` (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG) as the client sends it."""
        registry, _, repository_tag = reference.partition("/")
        repository, _, _ = repository_tag.partition(":")
        return f"{registry}/{repository}@{self.digests[repository_tag]}"


@pytest.fixture
def aws(moto_endpoint, monkeypatch) -> Iterator[FakeAws]:
    """A fresh moto account with the execution role; every client context records calls."""
    import boto3
    import requests

    from classifier_client import config

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    role_arn = boto3.client("iam").create_role(
        RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(TRUST_POLICY)
    )["Role"]["Arn"]
    fake = FakeAws(moto_endpoint, role_arn, RecordedCalls())
    for tag in IMAGE_TAGS:
        fake.push_image(IMAGE_REPOSITORY, tag)
    original = config.aws_context

    def recording_context(*args, **kwargs):
        ctx = original(*args, **kwargs)
        ctx.boto_session.events.register("provide-client-params.*.*", fake.recorded.record)
        ctx.boto_session.events.register("before-call.*.*", fake.answer)
        fake.contexts.append(ctx)
        return ctx

    monkeypatch.setattr(config, "aws_context", recording_context)
    yield fake


@pytest.fixture
def ctx(monkeypatch):
    """One fixed AWS context, which every command run through ``cli`` gets, so a test can put a
    Stubber on its clients. Where AWS_ENDPOINT_URL points when it is made (moto, or nowhere),
    its clients go."""
    from classifier_client import config

    context = config.aws_context(role_arn="arn:aws:iam::123456789012:role/Exec")
    monkeypatch.setattr(config, "aws_context", lambda *a, **k: context)
    return context


@pytest.fixture
def on_moto(moto_endpoint, monkeypatch) -> str:
    """A fresh moto account; AWS clients made afterwards go to it."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return moto_endpoint


@pytest.fixture
def cli():
    """Run ``sm-classifier ARGS...`` in-process; returns the exit code."""
    from classifier_client.cli import main

    return lambda *argv: main([str(a) for a in argv])


# --- data --------------------------------------------------------------------------------


@pytest.fixture
def tiny_image_folder():
    """A factory: ``tiny_image_folder(root, per_class=3)`` writes train/valid/test PNGs."""
    return _write_tiny_image_folder


def _write_tiny_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3) -> Path:
    """A few real PNGs per class and split (Pillow and numpy are in the SDK env through the SDK)."""
    for split in ("train", "valid", "test"):
        write_image_folder(root / split, dict.fromkeys(classes, per_class), size=(8, 8))
    return root


@pytest.fixture(scope="session")
def runtime_python() -> Path:
    """The image's runtime env on the host (torch, smdebug): runs ./train without Docker."""
    if not RUNTIME_PYTHON.exists():
        pytest.skip("needs the runtime env (.venv; `make setup`)")
    return RUNTIME_PYTHON


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory, runtime_python) -> Path:
    """The UCI digits as an ImageFolder (train/valid/test), written by tools.demo_data."""
    out = tmp_path_factory.mktemp("digits") / "digits"
    subprocess.run(
        [str(runtime_python), "-m", "tools.demo_data", str(out)],
        check=True,
        cwd=REPO_ROOT,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def digits_subset(digits_dir, tmp_path_factory):
    """A factory: the first ``per_class`` images of each digit per split, for fast jobs."""

    def make(per_class: dict[str, int]) -> Path:
        name = "-".join(f"{split}{count}" for split, count in per_class.items())
        out = tmp_path_factory.getbasetemp() / f"digits-{name}"
        if out.exists():
            return out
        for split, count in per_class.items():
            for class_dir in sorted((digits_dir / split).iterdir()):
                target = out / split / class_dir.name
                target.mkdir(parents=True)
                for image in sorted(class_dir.iterdir())[:count]:
                    shutil.copy(image, target / image.name)
        return out

    return make


# --- docker ------------------------------------------------------------------------------

LOCAL_IMAGE = os.environ.get("CLASSIFIER_TEST_IMAGE", "sagemaker-image-classifier:latest")


# `make test` sets CLASSIFIER_TEST_IMAGE after building the image: then a missing engine or
# image is a failure, not a skip, so CI cannot pass with the local-mode tests unrun.
DOCKER_REQUIRED = "CLASSIFIER_TEST_IMAGE" in os.environ


def _unavailable(reason: str):
    if DOCKER_REQUIRED:
        pytest.fail(f"{reason}, but CLASSIFIER_TEST_IMAGE is set", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def local_image() -> str:
    """The built image; the docker-marked tests need it (`make image`)."""
    if shutil.which("docker") is None:
        _unavailable("needs docker (scripts/docker_host_prerequisites.sh)")
    has_compose_v2 = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if shutil.which("docker-compose") is None and has_compose_v2.returncode != 0:
        _unavailable("SDK local mode needs docker compose (scripts/docker_host_prerequisites.sh)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        _unavailable("the Docker engine does not answer")
    if subprocess.run(["docker", "image", "inspect", LOCAL_IMAGE], capture_output=True).returncode:
        _unavailable(f"image {LOCAL_IMAGE} not built (make image)")
    return LOCAL_IMAGE


def pytest_configure(config):
    share_cores_among_workers()
    # The SDK's own modules import its deprecated alias; nothing for us to change.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:sagemaker.train.configs has been moved:DeprecationWarning",
    )


# --- one local-mode training, shared ----------------------------------------------------------

CLI = str(Path(sys.executable).with_name("sm-classifier"))
FAST = {
    "model": "resnet18", "image_size": "16", "batch_size": "32", "num_workers": "0",
    "augmentation": "none", "learning_rate": "0.003", "inference_export": "openvino",
}  # fmt: skip
EPOCHS = 3


def sm_classifier(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"sm-classifier {' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-2000:]}\n--- stderr ---\n{result.stderr[-8000:]}"
    )
    return result


def final_json(stdout: str) -> dict:
    """The CLI's result: stdout is only the JSON result (container logs go to stderr)."""
    return json.loads(stdout)


def hp_args(extra: dict | None = None) -> list[str]:
    return [arg for k, v in {**FAST, **(extra or {})}.items() for arg in ("--hp", f"{k}={v}")]


def job_metrics(stdout: str) -> dict:
    """metrics.json from the job's output.tar.gz."""
    with tarfile.open(final_json(stdout)["output_data"]) as tar:
        member = next(m for m in tar.getmembers() if Path(m.name).name == "metrics.json")
        return json.load(tar.extractfile(member))


@pytest.fixture(scope="session")
def digits_training(local_image, digits_subset, tmp_path_factory):
    """One single-instance local-mode training on the digits: the local-mode tests check it, and
    every test that only needs a trained model serves its model."""
    # All 1,259 training digits (about 120 per class), a tenth of valid and test.
    data = digits_subset({"train": 200, "valid": 10, "test": 10})
    runs = tmp_path_factory.mktemp("local-runs")
    result = sm_classifier(
        "train", "--local", "--image", local_image, "--data", data, "--local-dir", runs,
        "--no-debug-local", *container_env_args(), *hp_args({"epochs": str(EPOCHS)}),
    )  # fmt: skip
    return data, result


def train_on_host(
    runtime_python: Path, repo_root: Path, base: Path, hyperparameters: dict, data: Path, timeout: float
) -> subprocess.CompletedProcess:
    """The checkout's ``./train`` on an /opt/ml tree at ``base`` with every channel under ``data``."""
    channels = sorted(p.name for p in data.iterdir() if p.is_dir())
    write_job_config(base, hyperparameters, channels)
    for channel in channels:
        shutil.copytree(data / channel, base / "input" / "data" / channel)
    return subprocess.run(
        [str(runtime_python), str(repo_root / "train")],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
