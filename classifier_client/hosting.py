"""Hosting options beyond one real-time model: asynchronous, serverless and multi-model
endpoints, and automatic scaling. Each is a few fields of the CreateModel /
CreateEndpointConfig requests (built here, sent by :func:`classifier_client.endpoints.deploy`),
plus the calls that only some options make: Application Auto Scaling, InvokeEndpointAsync.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.constants import (
    MAX_PAYLOAD_IN_MB_ENV,
    MODEL_SERVER_TIMEOUT_ENV,
    MODEL_SERVER_WORKERS_ENV,
)
from classifier_client.config import AwsContext, ConfigurationError, parse_s3_uri

# "Serverless Inference": memory "in 1 GB increments: 1024 MB ... 6144 MB"; "The maximum
# request and response payload size for serverless invocations is 4 MB".
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 200
SERVERLESS_PAYLOAD_MB = 4
# "Asynchronous inference": "large payload sizes (up to 1GB), long processing times (up to
# one hour)". The server must accept both (config.py caps the payload at 1024 MB).
ASYNC_PAYLOAD_MB = 1024
ASYNC_TIMEOUT_S = 3600
# Application Auto Scaling names for a SageMaker production variant.
SCALING_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"
SCALE_IN_COOLDOWN_S = 300
SCALE_OUT_COOLDOWN_S = 60


@dataclass
class HostingOptions:
    """What ``deploy`` was asked for besides the model: at most one of async/serverless."""

    async_output: str | None = None
    async_failure: str | None = None
    success_topic: str | None = None
    error_topic: str | None = None
    async_max_concurrency: int | None = None
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int | None = None
    multi_model: bool = False
    autoscale: tuple[int, int] | None = None
    target_invocations: int | None = None

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb is not None

    def validate(self) -> None:
        if self.serverless and self.async_output:
            raise ConfigurationError("--serverless and --async-output are different endpoint kinds: pick one")
        if self.serverless:
            self._validate_serverless()
        if self.async_output:
            parse_s3_uri(self.async_output)
        elif self.async_failure or self.success_topic or self.error_topic or self.async_max_concurrency:
            raise ConfigurationError("the async options need --async-output s3://...")
        self._validate_autoscale()

    def _validate_serverless(self) -> None:
        if self.serverless_memory_mb not in SERVERLESS_MEMORY_SIZES:
            raise ConfigurationError(
                f"--serverless takes the memory in MB, one of {SERVERLESS_MEMORY_SIZES}; "
                f"got {self.serverless_memory_mb}"
            )
        if not 1 <= (self.serverless_max_concurrency or 1) <= SERVERLESS_MAX_CONCURRENCY:
            raise ConfigurationError(f"--max-concurrency must be 1-{SERVERLESS_MAX_CONCURRENCY}")
        if self.multi_model:
            raise ConfigurationError("serverless endpoints do not support multi-model endpoints")
        if self.autoscale:
            raise ConfigurationError("a serverless endpoint scales by itself: drop --autoscale")

    def _validate_autoscale(self) -> None:
        if self.autoscale is None:
            if self.target_invocations is not None:
                raise ConfigurationError("--target-invocations needs --autoscale MIN:MAX")
            return
        low, high = self.autoscale
        # Only asynchronous endpoints may scale in to zero instances.
        floor = 0 if self.async_output else 1
        if low < floor or high < max(low, 1):
            raise ConfigurationError(
                f"--autoscale MIN:MAX needs {floor} <= MIN <= MAX and MAX >= 1 (got {low}:{high})"
            )
        if not self.target_invocations or self.target_invocations < 1:
            raise ConfigurationError(
                "--autoscale needs --target-invocations N (invocations per instance per minute)"
            )

    def server_environment(self) -> dict[str, str]:
        """What the container needs for this kind of endpoint (explicit --env/--workers win)."""
        if self.serverless:
            # One worker, one model copy, and the serverless 4 MB payload limit.
            return {MODEL_SERVER_WORKERS_ENV: "1", MAX_PAYLOAD_IN_MB_ENV: str(SERVERLESS_PAYLOAD_MB)}
        if self.async_output:
            return {
                MAX_PAYLOAD_IN_MB_ENV: str(ASYNC_PAYLOAD_MB),
                MODEL_SERVER_TIMEOUT_ENV: str(ASYNC_TIMEOUT_S),
            }
        return {}

    def variant(self, base: dict[str, Any]) -> dict[str, Any]:
        """The ProductionVariant: serverless ones have a ServerlessConfig instead of instances."""
        if not self.serverless:
            return base
        config = {"MemorySizeInMB": self.serverless_memory_mb}
        config["MaxConcurrency"] = self.serverless_max_concurrency or 1
        return {
            "VariantName": base["VariantName"],
            "ModelName": base["ModelName"],
            "ServerlessConfig": config,
        }

    def endpoint_config_extras(self) -> dict[str, Any]:
        if not self.async_output:
            return {}
        output: dict[str, Any] = {"S3OutputPath": self.async_output}
        if self.async_failure:
            output["S3FailurePath"] = self.async_failure
        topics = {"SuccessTopic": self.success_topic, "ErrorTopic": self.error_topic}
        if any(topics.values()):
            output["NotificationConfig"] = {k: v for k, v in topics.items() if v}
        config: dict[str, Any] = {"OutputConfig": output}
        if self.async_max_concurrency:
            config["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": self.async_max_concurrency}
        return {"AsyncInferenceConfig": config}


def parse_autoscale(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ConfigurationError(f"--autoscale takes MIN:MAX instance counts, got {text!r}")
    return int(low), int(high)


# --- automatic scaling -------------------------------------------------------------------------


def variant_resource_id(endpoint_name: str, variant_name: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def enable_autoscaling(
    ctx: AwsContext, endpoint_name: str, variant_name: str, options: HostingOptions
) -> dict:
    """Register the variant's instance count and track invocations per instance."""
    scaling = ctx.client("application-autoscaling")
    resource_id = variant_resource_id(endpoint_name, variant_name)
    low, high = options.autoscale
    scaling.register_scalable_target(
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=low,
        MaxCapacity=high,
    )
    policy = scaling.put_scaling_policy(
        PolicyName=policy_name(endpoint_name),
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(options.target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC},
            "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
        },
    )
    return {"scalable_target": resource_id, "policy": policy["PolicyARN"]}


def disable_autoscaling(ctx: AwsContext, endpoint_name: str, variant_names: list[str]) -> list[str]:
    """Delete the variants' scaling policies and deregister them; nothing registered is fine."""
    scaling = ctx.client("application-autoscaling")
    removed = []
    for variant in variant_names:
        resource_id = variant_resource_id(endpoint_name, variant)
        targets = scaling.describe_scalable_targets(
            ServiceNamespace=SCALING_NAMESPACE,
            ResourceIds=[resource_id],
            ScalableDimension=SCALABLE_DIMENSION,
        )["ScalableTargets"]
        if not targets:
            continue
        policies = scaling.describe_scaling_policies(
            ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
        )["ScalingPolicies"]
        for policy in policies:
            scaling.delete_scaling_policy(
                PolicyName=policy["PolicyName"],
                ServiceNamespace=SCALING_NAMESPACE,
                ResourceId=resource_id,
                ScalableDimension=SCALABLE_DIMENSION,
            )
            removed.append(f"scaling policy {policy['PolicyName']}")
        scaling.deregister_scalable_target(
            ServiceNamespace=SCALING_NAMESPACE, ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
        )
        removed.append(f"scalable target {resource_id}")
    return removed


# --- asynchronous invocation ---------------------------------------------------------------------


def invoke_async(
    ctx: AwsContext,
    endpoint_name: str,
    image: Path,
    *,
    input_prefix: str,
    content_type: str,
    top_k: int,
    timeout_s: float = ASYNC_TIMEOUT_S,
    poll_s: float = 5.0,
) -> dict[str, Any]:
    """Upload the image, InvokeEndpointAsync, then poll the output (or failure) object."""
    bucket, prefix = parse_s3_uri(input_prefix)
    key = f"{prefix.rstrip('/')}/{int(time.time() * 1000)}-{image.name}".lstrip("/")
    s3 = ctx.client("s3")
    s3.upload_file(str(image), bucket, key, ExtraArgs={"ContentType": content_type})
    response = ctx.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint_name,
        InputLocation=f"s3://{bucket}/{key}",
        ContentType=content_type,
        Accept="application/json",
        CustomAttributes=f"top_k={top_k}",
        InvocationTimeoutSeconds=int(min(timeout_s, ASYNC_TIMEOUT_S)),
    )
    return _poll_result(s3, response["OutputLocation"], response.get("FailureLocation"), timeout_s, poll_s)


def _poll_result(s3, output: str, failure: str | None, timeout_s: float, poll_s: float) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout_s
    while True:
        for location, failed in ((output, False), (failure, True)):
            if not location:
                continue
            bucket, key = parse_s3_uri(location)
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    continue
                raise
            if failed:
                raise ConfigurationError(
                    f"the asynchronous inference failed ({location}): {body.decode(errors='replace')[:500]}"
                )
            return json.loads(body)
        if time.monotonic() > deadline:
            raise ConfigurationError(f"no result at {output} within {timeout_s:.0f} s")
        time.sleep(poll_s)
