"""Build and push the image by running ``build_and_push.sh`` (one implementation of the
ECR logic: create the repository if missing, log in, tag, push) and returning the image
reference it prints on its last stdout line.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from classifier_client.config import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from classifier_client.config import AwsContext

logger = logging.getLogger(__name__)

DEFAULT_IMAGE_NAME = "sagemaker-image-classifier"
DEFAULT_TAG = "latest"
# The serving image (container/Dockerfile's serve stage) goes to its own repository: NAME-serve.
SERVING_SUFFIX = "-serve"
SCRIPT_NAME = "build_and_push.sh"


def repository_root() -> Path:
    """The checkout holding build_and_push.sh (the client is installed editable from it)."""
    here = Path(__file__).resolve().parent.parent
    if (here / SCRIPT_NAME).exists():
        return here
    raise ConfigurationError(
        f"{SCRIPT_NAME} not found next to the client package ({here}); run `push` from a "
        "checkout of this repository (pip install -e .)"
    )


@dataclass(frozen=True)
class PushOptions:
    name: str = DEFAULT_IMAGE_NAME
    # None: DEFAULT_TAG locally, a unique build-<time> tag in ECR (build_and_push.sh).
    tag: str | None = None
    region: str | None = None
    account: str | None = None
    registry: str | None = None
    push: bool = True
    build: bool = True
    base_image: str | None = None
    mutable_tags: bool = False
    repository_tags: tuple[tuple[str, str], ...] = ()
    kms_key: str | None = None
    # The serving image (no torch, no training; docs/image.md), pushed to NAME-serve.
    serve_only: bool = False

    def __post_init__(self):
        from classifier_client.account_settings import check_tags

        check_tags(tuple({"Key": key, "Value": value} for key, value in self.repository_tags))

    def arguments(self) -> list[str]:
        args = ["--name", serving_name(self.name) if self.serve_only else self.name]
        if self.serve_only:
            args.append("--serve-only")
        if self.tag:
            args += ["--tag", self.tag]
        if self.region:
            args += ["--region", self.region]
        if self.account:
            args += ["--account", self.account]
        if self.registry:
            args += ["--registry", self.registry]
        if self.base_image:
            args += ["--base-image", self.base_image]
        if self.mutable_tags:
            args.append("--mutable-tags")
        for key, value in self.repository_tags:
            args += ["--repository-tag", f"{key}={value}"]
        if self.kms_key:
            args += ["--kms-key", self.kms_key]
        if not self.build:
            args.append("--skip-build")
        if not self.push:
            args.append("--no-push")
        return args


def push_image(options: PushOptions, script: Path | None = None) -> str:
    """Run the script (its progress goes to our stderr); returns the pushed image by digest
    (REPOSITORY@sha256:...), or the local reference with ``push=False``."""
    script = script or repository_root() / SCRIPT_NAME
    env = dict(os.environ)
    if options.region:
        env["AWS_REGION"] = options.region
    completed = subprocess.run(
        ["bash", str(script), *options.arguments()],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if completed.returncode != 0 or not lines:
        raise ConfigurationError(
            f"{script.name} failed with exit code {completed.returncode}; see its messages above"
        )
    return lines[-1].strip()


# --- images named by digest ----------------------------------------------------------------

DIGEST_REFERENCE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
ECR_REFERENCE = re.compile(
    r"^(?P<registry>(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?)"
    r"/(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$"
)


def serving_name(name: str) -> str:
    return name if name.endswith(SERVING_SUFFIX) else f"{name}{SERVING_SUFFIX}"


def default_repository(ctx: AwsContext, serving: bool = False) -> str:
    """The account's repository that `push` (or `push --serve-only`) makes; no tag: its newest
    image."""
    name = serving_name(DEFAULT_IMAGE_NAME) if serving else DEFAULT_IMAGE_NAME
    return f"{ctx.account}.dkr.ecr.{ctx.region}.amazonaws.com/{name}"


def pin_image(ctx: AwsContext, reference: str | None, serving: bool = False) -> str:
    """``reference`` as ``REPOSITORY@sha256:...``, the form every Create* request sends, so a
    re-pushed tag never changes what a job or a new endpoint instance runs.

    A tag is resolved with ECR DescribeImages; an ECR reference without a tag names the newest
    tagged image of its repository, and None the account's :func:`default_repository` (the
    serving image's with ``serving``). A tag that does not resolve is refused, naming it."""
    if reference is None:
        reference = default_repository(ctx, serving)
    if DIGEST_REFERENCE.match(reference):
        return reference
    match = ECR_REFERENCE.match(reference)
    if not match:
        raise ConfigurationError(
            f"image {reference!r}: SageMaker runs images from Amazon ECR; name it by digest "
            "(REPOSITORY@sha256:..., as `push` prints it) or as an ECR repository[:tag]"
        )
    ecr = (
        ctx.client("ecr")
        if match["region"] == ctx.region
        else ctx.boto_session.client("ecr", region_name=match["region"])
    )
    digest = _describe_digest(ecr, match, reference)
    pinned = f"{match['registry']}/{match['repository']}@{digest}"
    logger.info("image %s is %s", reference, pinned)
    return pinned


def _describe_digest(ecr, match: re.Match, reference: str) -> str:
    from botocore.exceptions import ClientError

    request = {"registryId": match["account"], "repositoryName": match["repository"]}
    try:
        if match["tag"]:
            found = ecr.describe_images(**request, imageIds=[{"imageTag": match["tag"]}])["imageDetails"]
        else:
            pages = ecr.get_paginator("describe_images").paginate(**request, filter={"tagStatus": "TAGGED"})
            found = sorted(
                (image for page in pages for image in page["imageDetails"]),
                key=lambda image: image.get("imagePushedAt") or 0,
            )[-1:]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise ConfigurationError(
            f"image {reference!r} does not resolve in ECR ({code}: "
            f"{error.response.get('Error', {}).get('Message', '')}); push it first "
            f"(sm-classifier push{' --serve-only' if match['repository'].endswith(SERVING_SUFFIX) else ''}) "
            "or name it by digest"
        ) from error
    if not found:
        raise ConfigurationError(f"image {reference!r}: repository {match['repository']} holds no image")
    return found[0]["imageDigest"]
