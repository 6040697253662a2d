"""AWS session, region, credentials and role resolution, with errors that say what to do.

Nothing here runs at import time: every boto3/SageMaker session is built on demand, so
``--help`` and ``metric-definitions`` work on a machine with no AWS configuration at all.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import boto3
    from sagemaker.core.helper.session_helper import Session

# Environment variables the CLI reads as defaults for the matching flags.
ROLE_ENV = "SAGEMAKER_ROLE_ARN"
IMAGE_ENV = "CLASSIFIER_IMAGE_URI"
BUCKET_ENV = "CLASSIFIER_S3_BUCKET"

# Where local mode needs a region but nothing is configured: any region works offline.
LOCAL_MODE_DEFAULT_REGION = "us-east-1"
# Any well-formed ARN: SDK local mode never calls IAM with it.
LOCAL_MODE_ROLE = "arn:aws:iam::123456789012:role/local-mode-unused"

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


class ConfigurationError(RuntimeError):
    """Something the user must configure (credentials, region, role, image); never a bug."""


@dataclass
class AwsContext:
    """One boto3 session and the settings every cloud call shares."""

    boto_session: boto3.Session
    role_arn: str | None = None
    _account: str | None = field(default=None, repr=False)
    _clients: dict = field(default_factory=dict, repr=False)
    _sagemaker_session: Session | None = field(default=None, repr=False)

    @property
    def region(self) -> str:
        return self.boto_session.region_name

    @property
    def account(self) -> str:
        """The caller's account id (one STS call, cached)."""
        if self._account is None:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                identity = self.client("sts").get_caller_identity()
            except (BotoCoreError, ClientError) as error:
                raise ConfigurationError(
                    f"cannot identify the AWS account (sts:GetCallerIdentity failed: {error}). "
                    "Check your credentials (`aws sts get-caller-identity`)."
                ) from error
            self._account = identity["Account"]
        return self._account

    def require_role(self) -> str:
        if not self.role_arn:
            raise ConfigurationError(
                f"no SageMaker execution role: pass --role ARN or set {ROLE_ENV}. "
                "The role needs the permissions listed in docs/sagemaker.md (IAM section)."
            )
        return self.role_arn

    def client(self, service: str):
        """One boto3 client per service for this context (tests can stub it)."""
        if service not in self._clients:
            self._clients[service] = self.boto_session.client(service)
        return self._clients[service]

    @property
    def sagemaker_session(self) -> Session:
        """The SDK session on top of our boto3 session (so tests can point it at moto)."""
        if self._sagemaker_session is None:
            from sagemaker.core.helper.session_helper import Session

            # The bucket is named here, through our boto3 session, rather than by the SDK
            # (which asks STS through a hard-wired regional endpoint).
            self._sagemaker_session = Session(
                boto_session=self.boto_session, default_bucket=self.default_bucket_name()
            )
        return self._sagemaker_session

    def default_bucket_name(self) -> str:
        """``$CLASSIFIER_S3_BUCKET``, else the SDK's convention ``sagemaker-<region>-<account>``."""
        return os.environ.get(BUCKET_ENV) or f"sagemaker-{self.region}-{self.account}"

    def default_bucket(self) -> str:
        """The default bucket, created if missing (as the SDK does)."""
        return self.sagemaker_session.default_bucket()


def validate_role_arn(role_arn: str) -> str:
    if not _ROLE_ARN.match(role_arn):
        raise ConfigurationError(
            f"--role must be an IAM role ARN like arn:aws:iam::123456789012:role/NAME, got {role_arn!r}"
        )
    return role_arn


def aws_context(
    region: str | None = None,
    profile: str | None = None,
    role_arn: str | None = None,
    *,
    local: bool = False,
) -> AwsContext:
    """A context for cloud calls; fails early and clearly without credentials or region.

    In local mode nothing is sent to AWS, so missing credentials are fine and the region
    falls back to a placeholder (the SDK still wants one to build its clients).
    """
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as error:
        raise ConfigurationError(f"AWS profile not found: {error}") from error
    role_arn = role_arn or os.environ.get(ROLE_ENV)
    if local:
        if not session.region_name:
            session = boto3.Session(profile_name=profile, region_name=LOCAL_MODE_DEFAULT_REGION)
        return AwsContext(session, role_arn or LOCAL_MODE_ROLE)
    if not session.region_name:
        raise ConfigurationError(
            "no AWS region: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), "
            "or add `region = ...` to your AWS profile."
        )
    if session.get_credentials() is None:
        raise ConfigurationError(
            "no AWS credentials found: run `aws configure` or `aws sso login`, set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass --profile. "
            "Steps that can run offline take --local."
        )
    if role_arn:
        validate_role_arn(role_arn)
    return AwsContext(session, role_arn)


_NAME_SAFE = re.compile(r"[^a-zA-Z0-9-]+")


def wait_with(sagemaker, waiter: str, failure: str, max_attempts: int, **resource: str) -> None:
    """Poll boto3's ``waiter`` every 30 s, at most ``max_attempts`` times; ConfigurationError
    ``failure: <FailureReason>`` when it gives up or the resource failed."""
    from botocore.exceptions import WaiterError

    try:
        sagemaker.get_waiter(waiter).wait(**resource, WaiterConfig={"Delay": 30, "MaxAttempts": max_attempts})
    except WaiterError as error:
        reason = (error.last_response or {}).get("FailureReason")
        raise ConfigurationError(f"{failure}: {reason or error}") from error


def unique_name(base: str, max_length: int = 63) -> str:
    """``base-YYYYmmdd-HHMMSS-mmm`` in SageMaker's name alphabet and length limit."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"
    base = _NAME_SAFE.sub("-", base).strip("-") or "classifier"
    return f"{base[: max_length - len(stamp) - 1].rstrip('-')}-{stamp}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` -> (bucket, key/prefix)."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ConfigurationError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
