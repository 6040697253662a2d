"""The settings a regulated account requires on every Create* request: VPC, KMS keys, network
isolation, inter-container traffic encryption and tags.

Organisation policies refuse requests without them (condition keys ``sagemaker:VpcSubnets``,
``sagemaker:VolumeKmsKey``, ``sagemaker:OutputKmsKey``, ``sagemaker:NetworkIsolation``,
``sagemaker:InterContainerTrafficEncryption``, ``aws:RequestTag/...``; docs/security.md). They come
from two sources, and a flag wins over the file:

- the SageMaker Python SDK's own defaults file (``config.yaml`` at the SDK's locations, or
  ``SAGEMAKER_ADMIN_CONFIG_OVERRIDE`` / ``SAGEMAKER_USER_CONFIG_OVERRIDE``), read and validated
  against its schema by the SDK's own loader, and applied here also to the requests the client
  builds with boto3 (model, endpoint config, endpoint, transform job);
- the flags ``--subnets``, ``--security-group-ids``, ``--kms-key``, ``--network-isolation``,
  ``--encrypt-inter-container-traffic`` and ``--tag KEY=VALUE``.

What AWS would refuse is refused here, before any call, with AWS's own sentence.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier.redaction import names_a_secret, uri_has_credentials
from classifier_client.config import ConfigurationError

logger = logging.getLogger(__name__)

# API reference, VpcConfig: SecurityGroupIds "Array Members: Minimum number of 1 item. Maximum
# number of 5 items", Subnets "Minimum number of 1 item. Maximum number of 16 items", each
# "Maximum length of 32. Pattern: [-0-9a-zA-Z]+".
MAX_SECURITY_GROUPS, MAX_SUBNETS = 5, 16
VPC_ID = re.compile(r"[-0-9a-zA-Z]{1,32}")
# API reference, Tag: Key "Length Constraints: Minimum length of 1. Maximum length of 128",
# Value "Maximum length of 256", both "Pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"; CreateTrainingJob
# (and every Create* with Tags): "Array Members: Minimum number of 0 items. Maximum number of 50".
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 50, 128, 256
TAG_PUNCTUATION = set("_.:/=+-@")
RESERVED_TAG_PREFIX = "aws:"
# API reference, RetryStrategy: MaximumRetryAttempts "Valid Range: Minimum value of 1. Maximum
# value of 30."
MAX_RETRIES = 30
# What applied_locally resolves the settings for: an instance type without local storage.
LOCAL_INSTANCE_TYPE = "ml.m5.xlarge"
# API reference, ResourceConfig.VolumeKmsKeyId (TransformResources and CreateEndpointConfig.KmsKeyId
# say the same): "Certain Nitro-based instances include local storage, dependent on the instance
# type. Local storage volumes are encrypted using a hardware module on the instance. You can't
# request a VolumeKmsKeyId when using an instance type with local storage." ResourceConfig's
# VolumeSizeInGB names "ml.p4d, ml.g4dn, and ml.g5" among the NVMe families; in EC2's naming a
# "d" in the attribute letters (m5d, c6id, p3dn) is local NVMe storage.
LOCAL_STORAGE_SENTENCE = (
    "AWS: \"Local storage volumes are encrypted using a hardware module on the instance. You can't "
    'request a VolumeKmsKeyId when using an instance type with local storage."'
)
NVME_FAMILIES = {
    *("g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6", "p6e"),
    *("trn1", "trn1n", "trn2"),
}  # fmt: skip
# ml.<series><generation><attribute letters>[-<variant>].<size>, e.g. ml.m5d.xlarge, ml.p6-b200.48xlarge
_FAMILY = re.compile(r"^ml\.(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z]*)(?:-[a-z0-9]+)?\.")
ENV_SECRET_SENTENCE = (
    'AWS: "Do not include any security-sensitive information including account access IDs, secrets, '
    'or tokens in any environment fields."'
)


def has_local_storage(instance_type: str) -> bool:
    match = _FAMILY.match(instance_type)
    if not match:
        return False
    family = f"{match['series']}{match['generation']}{match['attributes']}"
    return family in NVME_FAMILIES or "d" in match["attributes"]


def s3_encryption(kms_key: str | None) -> dict[str, str]:
    """boto3's ExtraArgs for an object the client writes to S3: SSE-KMS with ``kms_key``."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}


def refuse_secrets(environment: Mapping[str, str], where: str) -> None:
    """No environment variable named like a secret, nor a URI with credentials in it, is ever
    sent: environment fields are readable by anyone who may describe the job or model."""
    secret = sorted(key for key, value in environment.items() if names_a_secret(key))
    secret += sorted(key for key, value in environment.items() if uri_has_credentials(str(value)))
    if secret:
        raise ConfigurationError(
            f"{where} {', '.join(secret)}: holds a secret (its name, or credentials in a URI), and "
            f"environment fields are readable by anyone who may describe the job or model. "
            f"{ENV_SECRET_SENTENCE} Give the container what it needs through its execution role "
            "instead (read from AWS Secrets Manager or SSM Parameter Store at run time, or a "
            "SageMaker managed MLflow server's ARN)."
        )


@dataclass(frozen=True)
class AccountFlags:
    """The command line's side; empty values leave the defaults file's."""

    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    kms_key: str | None = None
    network_isolation: bool = False
    inter_container_encryption: bool = False
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RequestSettings:
    """What one Create* request carries, resolved from both sources."""

    vpc: dict[str, list[str]] | None = None
    network_isolation: bool = False
    inter_container_encryption: bool = False
    output_kms_key: str | None = None
    volume_kms_key: str | None = None
    tags: tuple[dict[str, str], ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def tag_list(self) -> list[dict[str, str]]:
        return [dict(tag) for tag in self.tags]

    def warn(self) -> RequestSettings:
        """Log what was left out of the request (and AWS's reason); returns self."""
        for note in self.notes:
            logger.warning("%s", note)
        return self


# sagemaker.core.config.config: the admin and user files are SAGEMAKER_ADMIN_CONFIG_OVERRIDE /
# SAGEMAKER_USER_CONFIG_OVERRIDE, else "config.yaml" under platformdirs' site_config_dir and
# user_config_dir of "sagemaker"; missing default files are skipped.
SDK_APP_NAME = "sagemaker"
CONFIG_OVERRIDE_ENVS = ("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", "SAGEMAKER_USER_CONFIG_OVERRIDE")


def defaults_file_may_exist() -> bool:
    """Whether the SDK could find a defaults file. Importing the SDK's loader takes two seconds
    of CPU, which a local command that finds none should not pay."""
    import os

    from platformdirs import site_config_dir, user_config_dir

    if any(os.environ.get(name) for name in CONFIG_OVERRIDE_ENVS):
        return True
    return any(
        Path(folder(SDK_APP_NAME), "config.yaml").exists() for folder in (site_config_dir, user_config_dir)
    )


def load_defaults() -> dict[str, Any]:
    """The SDK's defaults files merged (admin, then user), validated by the SDK's own loader."""
    if not defaults_file_may_exist():
        return {}
    from sagemaker.core.config import load_sagemaker_config

    try:
        return load_sagemaker_config() or {}
    except Exception as error:  # noqa: BLE001 - the SDK raises jsonschema, ValueError or RuntimeError
        raise ConfigurationError(
            f"the SageMaker SDK defaults file cannot be used: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''} (SAGEMAKER_ADMIN_CONFIG_OVERRIDE / "
            "SAGEMAKER_USER_CONFIG_OVERRIDE, or the SDK's default locations)"
        ) from error


@dataclass(frozen=True)
class AccountSettings:
    """Flags over the SDK defaults file, per kind of request."""

    flags: AccountFlags = field(default_factory=AccountFlags)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, flags: AccountFlags | None = None) -> AccountSettings:
        return cls(flags or AccountFlags(), load_defaults())

    def _value(self, *path: str) -> Any:
        section: Any = self.defaults.get("SageMaker", {})
        for key in path:
            if not isinstance(section, Mapping) or key not in section:
                return None
            section = section[key]
        return section

    # --- per request ----------------------------------------------------------------------

    def training(self, instance_type: str) -> RequestSettings:
        """CreateTrainingJob, and a tuning job's training job definition."""
        file_output_key = self._value("TrainingJob", "OutputDataConfig", "KmsKeyId")
        file_volume_key = self._value("TrainingJob", "ResourceConfig", "VolumeKmsKeyId")
        volume_key, notes = self._volume_key(instance_type, self.flags.kms_key or file_volume_key)
        return RequestSettings(
            vpc=self._vpc("TrainingJob"),
            network_isolation=self.flags.network_isolation
            or bool(self._value("TrainingJob", "EnableNetworkIsolation")),
            inter_container_encryption=self.flags.inter_container_encryption
            or bool(self._value("TrainingJob", "EnableInterContainerTrafficEncryption")),
            output_kms_key=self.flags.kms_key or file_output_key,
            volume_kms_key=volume_key,
            tags=self._tags("TrainingJob"),
            environment=dict(self._value("TrainingJob", "Environment") or {}),
            notes=notes,
        )

    def model(self) -> RequestSettings:
        """CreateModel."""
        return RequestSettings(
            vpc=self._vpc("Model"),
            network_isolation=self.flags.network_isolation
            or bool(self._value("Model", "EnableNetworkIsolation")),
            tags=self._tags("Model"),
            environment=dict(self._value("Model", "PrimaryContainer", "Environment") or {}),
        )

    def endpoint_config(self, instance_types: list[str]) -> RequestSettings:
        """CreateEndpointConfig: the hosting volume's key (KmsKeyId), the async output's key."""
        key: str | None = self.flags.kms_key or self._value("EndpointConfig", "KmsKeyId")
        notes: tuple[str, ...] = ()
        for instance_type in instance_types:
            key, left_out = self._volume_key(instance_type, key, "KmsKeyId")
            notes += left_out
        async_key = self.flags.kms_key or self._value(
            "EndpointConfig", "AsyncInferenceConfig", "OutputConfig", "KmsKeyId"
        )
        return RequestSettings(
            output_kms_key=async_key, volume_kms_key=key, tags=self._tags("EndpointConfig"), notes=notes
        )

    def endpoint(self) -> RequestSettings:
        return RequestSettings(tags=self._tags("Endpoint"))

    def transform(self, instance_type: str) -> RequestSettings:
        """CreateTransformJob: the output's key, the volume's key."""
        volume_key, notes = self._volume_key(
            instance_type,
            self.flags.kms_key or self._value("TransformJob", "TransformResources", "VolumeKmsKeyId"),
        )
        return RequestSettings(
            output_kms_key=self.flags.kms_key or self._value("TransformJob", "TransformOutput", "KmsKeyId"),
            volume_kms_key=volume_key,
            tags=self._tags("TransformJob"),
            environment=dict(self._value("TransformJob", "Environment") or {}),
            notes=notes,
        )

    def applied_locally(self, requests: tuple[str, ...]) -> list[str]:
        """What is set (flags or file) for ``requests`` (``training``, ``model``,
        ``endpoint_config``, ``endpoint``, ``transform``) that local mode does not apply."""
        resolvers = {
            "training": lambda: self.training(LOCAL_INSTANCE_TYPE),
            "model": self.model,
            "endpoint_config": lambda: self.endpoint_config([LOCAL_INSTANCE_TYPE]),
            "endpoint": self.endpoint,
            "transform": lambda: self.transform(LOCAL_INSTANCE_TYPE),
        }
        resolved = [resolvers[kind]() for kind in requests]
        ignored = {
            "VpcConfig": any(r.vpc for r in resolved),
            "KMS keys": any(r.output_kms_key or r.volume_kms_key for r in resolved),
            "network isolation": any(r.network_isolation for r in resolved),
            "inter-container traffic encryption": any(r.inter_container_encryption for r in resolved),
            "tags": any(r.tags for r in resolved),
        }
        return [name for name, value in ignored.items() if value]

    # --- the pieces -----------------------------------------------------------------------

    def _vpc(self, resource: str) -> dict[str, list[str]] | None:
        file_vpc = self._value(resource, "VpcConfig") or {}
        subnets = list(self.flags.subnets) or list(file_vpc.get("Subnets") or [])
        groups = list(self.flags.security_group_ids) or list(file_vpc.get("SecurityGroupIds") or [])
        if not subnets and not groups:
            return None
        vpc = {"SecurityGroupIds": groups, "Subnets": subnets}
        check_vpc(vpc, resource)
        return vpc

    def _tags(self, resource: str) -> tuple[dict[str, str], ...]:
        merged = {tag["Key"]: tag.get("Value", "") for tag in self._value(resource, "Tags") or []}
        merged.update(dict(self.flags.tags))
        tags = tuple({"Key": key, "Value": value} for key, value in merged.items())
        check_tags(tags)
        return tags

    def _volume_key(
        self, instance_type: str, key: str | None, field_name: str = "VolumeKmsKeyId"
    ) -> tuple[str | None, tuple[str, ...]]:
        if key and has_local_storage(instance_type):
            return None, (f"{field_name} left out for {instance_type}: {LOCAL_STORAGE_SENTENCE}",)
        return key, ()

    # --- AWS's rules, before any call -----------------------------------------------------


def check_vpc(vpc: dict[str, list[str]] | None, resource: str) -> None:
    if vpc is None:
        return
    subnets, groups = vpc["Subnets"], vpc["SecurityGroupIds"]
    if not subnets or not groups:
        missing = "--subnets" if not subnets else "--security-group-ids"
        raise ConfigurationError(
            f"{resource} VpcConfig without {missing}: a VPC needs both. AWS (VpcConfig): Subnets and "
            'SecurityGroupIds are both "Required: Yes"; SecurityGroupIds: "Specify the security '
            'groups for the VPC that is specified in the Subnets field."'
        )
    if len(subnets) > MAX_SUBNETS or len(groups) > MAX_SECURITY_GROUPS:
        raise ConfigurationError(
            f"{resource} VpcConfig has {len(subnets)} subnets and {len(groups)} security groups: AWS "
            f"(VpcConfig) allows 1 to {MAX_SUBNETS} subnets and 1 to {MAX_SECURITY_GROUPS} security groups"
        )
    bad = [value for value in (*subnets, *groups) if not VPC_ID.fullmatch(value)]
    if bad:
        raise ConfigurationError(
            f"{resource} VpcConfig: {bad} are not subnet or security group ids (AWS, VpcConfig: "
            '"Maximum length of 32. Pattern: [-0-9a-zA-Z]+", e.g. subnet-0abc, sg-0abc)'
        )


def _tag_text_ok(text: str) -> bool:
    return all(c in TAG_PUNCTUATION or unicodedata.category(c)[0] in "LZN" for c in text)


def check_tags(tags: tuple[dict[str, str], ...]) -> None:
    """AWS's limits on tags (API reference, Tag, and "Tagging your AWS resources")."""
    if len(tags) > MAX_TAGS:
        raise ConfigurationError(
            f'{len(tags)} tags: AWS allows at most {MAX_TAGS} on a resource (Tags: "Maximum number '
            f'of {MAX_TAGS} items")'
        )
    for tag in tags:
        key, value = tag["Key"], tag["Value"]
        if key.lower().startswith(RESERVED_TAG_PREFIX) or value.lower().startswith(RESERVED_TAG_PREFIX):
            raise ConfigurationError(
                f"tag {key}={value}: AWS (tag restrictions): \"Don't use aws:, AWS:, or any upper or "
                "lowercase combination of such as a prefix for either keys or values, as it is "
                'reserved for AWS use."'
            )
        if not 1 <= len(key) <= MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise ConfigurationError(
                f"tag {key!r}: AWS (Tag) allows keys of 1 to {MAX_TAG_KEY} characters and values of "
                f"at most {MAX_TAG_VALUE} (this key has {len(key)}, its value {len(value)})"
            )
        if not (_tag_text_ok(key) and _tag_text_ok(value)):
            raise ConfigurationError(
                f"tag {key}={value}: AWS (Tag) allows letters, digits, spaces and _.:/=+-@ only "
                r'("Pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")'
            )


def parse_tags(pairs: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``["team=vision", "cost-centre=42"]`` -> ``(("team", "vision"), ("cost-centre", "42"))``."""
    tags = []
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"--tag {pair!r} is not KEY=VALUE")
        tags.append((key.strip(), value.strip()))
    return tuple(tags)


def parse_ids(text: str | None, flag: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in (text or "").split(",") if part.strip())
    if text is not None and not ids:
        raise ConfigurationError(f"{flag} takes ID,ID,...")
    return ids


def check_retries(max_retries: int | None) -> None:
    if max_retries is not None and not 1 <= max_retries <= MAX_RETRIES:
        raise ConfigurationError(
            f"--max-retries {max_retries}: AWS (RetryStrategy.MaximumRetryAttempts) allows 1 to {MAX_RETRIES}"
        )
