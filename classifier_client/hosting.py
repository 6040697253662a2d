"""Hosting options beyond one real-time model: asynchronous, serverless and multi-model
endpoints, and automatic scaling. Each is a few fields of the CreateModel /
CreateEndpointConfig requests (built here, sent by :func:`classifier_client.endpoints.deploy`),
plus the calls that only some options make: Application Auto Scaling, InvokeEndpointAsync.
"""

from __future__ import annotations

import json
import re
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
# Asynchronous endpoints' CloudWatch metrics ("Autoscale an asynchronous endpoint").
ASYNC_METRIC_NAMESPACE = "AWS/SageMaker"
BACKLOG_METRIC = "ApproximateBacklogSizePerInstance"
NO_CAPACITY_METRIC = "HasBacklogWithoutCapacity"
SCALE_OUT_FROM_ZERO_COOLDOWN_S = 300
# "Supported algorithms, frameworks, and instances for multi-model endpoints": "Hosting multiple
# GPU backed models on multi-model endpoints is supported through the SageMaker AI Triton
# Inference server"; CPU instances ("Multi-model endpoints support all of the CPU instance
# types") take our container. The GPU families: ml.p* and ml.g*.
GPU_INSTANCE_TYPE = re.compile(r"^ml\.[pg]\d")


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
    target_backlog: float | None = None

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb is not None

    @property
    def scales_to_zero(self) -> bool:
        return bool(self.async_output and self.autoscale and self.autoscale[0] == 0)

    def validate(self, instance_type: str | None = None) -> None:
        """Everything refused offline, before any request: run it before the AWS context."""
        if self.serverless and self.async_output:
            raise ConfigurationError("--serverless and --async-output are different endpoint kinds: pick one")
        if self.serverless:
            self._validate_serverless()
        if self.multi_model:
            self._validate_multi_model(instance_type)
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

    def _validate_multi_model(self, instance_type: str | None) -> None:
        if self.async_output:
            # API reference, InvokeEndpointAsync: its request has no TargetModel (InvokeEndpoint's
            # "The model to request for inference when invoking a multi-model endpoint").
            raise ConfigurationError(
                "--multi-model cannot be combined with --async-output: InvokeEndpointAsync has no "
                "TargetModel, so an asynchronous request cannot name one of the endpoint's models"
            )
        if instance_type and GPU_INSTANCE_TYPE.match(instance_type):
            raise ConfigurationError(
                f"--multi-model on the GPU instance type {instance_type}: SageMaker hosts "
                "multi-model endpoints on GPU instances only with its Triton Inference Server "
                "container, not with this image; use a CPU --instance-type (e.g. ml.m5.xlarge) "
                "or one endpoint per model"
            )

    def _validate_autoscale(self) -> None:
        if self.autoscale is None:
            if self.target_invocations is not None or self.target_backlog is not None:
                raise ConfigurationError("--target-invocations and --target-backlog need --autoscale MIN:MAX")
            return
        low, high = self.autoscale
        # Only asynchronous endpoints may scale in to zero instances.
        floor = 0 if self.async_output else 1
        if low < floor or high < max(low, 1):
            raise ConfigurationError(
                f"--autoscale MIN:MAX needs {floor} <= MIN <= MAX and MAX >= 1 (got {low}:{high})"
            )
        if self.scales_to_zero:
            if self.target_invocations is not None or not (self.target_backlog or 0) > 0:
                raise ConfigurationError(
                    "an asynchronous endpoint with --autoscale 0:MAX scales on its queue: give "
                    "--target-backlog N (queued requests per instance), not --target-invocations "
                    "(at zero instances there are no invocations per instance to measure)"
                )
            return
        if self.target_backlog is not None:
            raise ConfigurationError(
                "--target-backlog is for an asynchronous endpoint that scales in to zero "
                "(--async-output with --autoscale 0:MAX); use --target-invocations N"
            )
        if not self.target_invocations or self.target_invocations < 1:
            raise ConfigurationError(
                "--autoscale needs --target-invocations N (invocations per instance per minute)"
            )

    def scaling(self) -> tuple[int, int, float]:
        """MIN, MAX and the target: queued requests per instance for an asynchronous endpoint
        that scales in to zero, else invocations per instance per minute."""
        target = self.target_backlog if self.scales_to_zero else self.target_invocations
        if self.autoscale is None or target is None:
            raise ConfigurationError("autoscaling needs --autoscale MIN:MAX and its target")
        low, high = self.autoscale
        return low, high, float(target)

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


def backlog_policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-backlog-per-instance"


def scale_out_from_zero_policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-scale-out-from-zero"


def backlog_alarm_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-has-backlog-without-capacity"


def enable_autoscaling(
    ctx: AwsContext,
    endpoint_name: str,
    variant_name: str,
    options: HostingOptions,
    tags: list[dict[str, str]] | None = None,
) -> dict:
    """Register the variant's instance count and track invocations per instance, or, for an
    asynchronous endpoint that scales in to zero, its queue (:func:`_scale_on_backlog`). The
    scalable target and the alarm carry ``tags`` (scaling policies take none)."""
    scaling = ctx.client("application-autoscaling")
    resource_id = variant_resource_id(endpoint_name, variant_name)
    low, high, target = options.scaling()
    scaling.register_scalable_target(
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=low,
        MaxCapacity=high,
        **({"Tags": {tag["Key"]: tag["Value"] for tag in tags}} if tags else {}),
    )
    if options.scales_to_zero:
        policies = _scale_on_backlog(ctx, endpoint_name, resource_id, target, tags or [])
        return {"scalable_target": resource_id, **policies}
    policy = _track(
        scaling,
        policy_name(endpoint_name),
        resource_id,
        target,
        {"PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC}},
    )
    return {"scalable_target": resource_id, "policy": policy}


def _track(scaling, name: str, resource_id: str, target: float, metric: dict) -> str:
    """A target-tracking policy on ``metric``; returns its ARN."""
    return scaling.put_scaling_policy(
        PolicyName=name,
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": target,
            **metric,
            "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
        },
    )["PolicyARN"]


def _scale_on_backlog(
    ctx: AwsContext, endpoint_name: str, resource_id: str, target: float, tags: list[dict[str, str]]
) -> dict:
    """AWS's two policies for an asynchronous endpoint at zero instances ("Autoscale an
    asynchronous endpoint"): target tracking of ApproximateBacklogSizePerInstance ("For
    asynchronous endpoints SageMaker strongly recommends that you create a policy configuration
    for target-tracking scaling"), and, because "If your endpoint has been scaled down to zero
    instances [...] your endpoint won't scale up again until the number of requests in the
    queue exceeds the target", a step policy that adds one instance, run by a CloudWatch alarm
    on HasBacklogWithoutCapacity, with the guide's settings."""
    scaling = ctx.client("application-autoscaling")
    dimensions = [{"Name": "EndpointName", "Value": endpoint_name}]
    backlog = {
        "MetricName": BACKLOG_METRIC,
        "Namespace": ASYNC_METRIC_NAMESPACE,
        "Dimensions": dimensions,
        "Statistic": "Average",
    }
    tracking = _track(
        scaling, backlog_policy_name(endpoint_name), resource_id, float(target),
        {"CustomizedMetricSpecification": backlog},
    )  # fmt: skip
    step = scaling.put_scaling_policy(
        PolicyName=scale_out_from_zero_policy_name(endpoint_name),
        ServiceNamespace=SCALING_NAMESPACE,
        ResourceId=resource_id,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": SCALE_OUT_FROM_ZERO_COOLDOWN_S,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )["PolicyARN"]
    alarm = backlog_alarm_name(endpoint_name)
    ctx.client("cloudwatch").put_metric_alarm(
        AlarmName=alarm,
        AlarmDescription=f"requests queued for {endpoint_name} at zero instances: add one",
        MetricName=NO_CAPACITY_METRIC,
        Namespace=ASYNC_METRIC_NAMESPACE,
        Statistic="Average",
        Dimensions=dimensions,
        Period=60,
        EvaluationPeriods=2,
        DatapointsToAlarm=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="missing",
        AlarmActions=[step],
        **({"Tags": tags} if tags else {}),
    )
    return {"policy": tracking, "scale_out_from_zero": step, "alarm": alarm}


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
    if removed:
        removed += _delete_backlog_alarm(ctx, endpoint_name)
    return removed


def _delete_backlog_alarm(ctx: AwsContext, endpoint_name: str) -> list[str]:
    """The scale-out-from-zero alarm, if there is one. API reference, DeleteScalingPolicy:
    "Deleting a step scaling policy deletes the underlying alarm action, but does not delete
    the CloudWatch alarm associated with the scaling policy"."""
    cloudwatch = ctx.client("cloudwatch")
    name = backlog_alarm_name(endpoint_name)
    if not cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
        return []
    cloudwatch.delete_alarms(AlarmNames=[name])
    return [f"alarm {name}"]


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
    return poll_async_result(
        s3, response["OutputLocation"], response.get("FailureLocation"), timeout_s, poll_s
    )


# API reference, S3 GetObject: "If the object that you request doesn't exist, the error that
# Amazon S3 returns depends on whether you also have the s3:ListBucket permission. If you have
# the s3:ListBucket permission on the bucket, Amazon S3 returns an HTTP status code 404 Not
# Found error. If you don't have the s3:ListBucket permission, Amazon S3 returns an HTTP status
# code 403 Access Denied error." While polling, both mean "not written yet".
NOT_WRITTEN_YET = ("NoSuchKey", "404")
NOT_WRITTEN_OR_NOT_LISTABLE = ("AccessDenied", "403")


def poll_async_result(
    s3, output: str, failure: str | None, timeout_s: float, poll_s: float
) -> dict[str, Any]:
    """The answer InvokeEndpointAsync writes to ``output`` (an S3 URI), read every ``poll_s``
    seconds with the S3 client ``s3``; ConfigurationError when the ``failure`` object appears or
    ``timeout_s`` passes first, naming the permission that 403s point to."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + timeout_s
    denied: set[str] = set()
    while True:
        for location, failed in ((output, False), (failure, True)):
            if not location:
                continue
            bucket, key = parse_s3_uri(location)
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code in NOT_WRITTEN_OR_NOT_LISTABLE:
                    denied.add(bucket)
                elif code not in NOT_WRITTEN_YET:
                    raise
                continue
            if failed:
                raise ConfigurationError(
                    f"the asynchronous inference failed ({location}): {body.decode(errors='replace')[:500]}"
                )
            return json.loads(body)
        if time.monotonic() > deadline:
            raise ConfigurationError(_timeout_message(output, timeout_s, denied))
        time.sleep(poll_s)


def _timeout_message(output: str, timeout_s: float, denied: set[str]) -> str:
    message = f"no result at {output} within {timeout_s:.0f} s"
    if denied:
        buckets = ", ".join(f"arn:aws:s3:::{bucket}" for bucket in sorted(denied))
        message += (
            f"; S3 answered 403 AccessDenied, which is how it answers a key that does not exist "
            f"yet to a caller without s3:ListBucket on the bucket, and also a real denial of "
            f"s3:GetObject: grant s3:ListBucket on {buckets} to tell them apart (a missing key "
            "then answers 404)"
        )
    return message
