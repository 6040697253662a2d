"""``update`` and ``weights``: a live endpoint changed without downtime.

``update`` ships a new model: a new model and endpoint config built from the live ones (so the
hosting options, scaling, data capture and the account's VPC, keys and tags carry over unless
the command changes them), then ``UpdateEndpoint`` with a ``DeploymentConfig``. SageMaker runs
it as a blue/green deployment (all at once, canary or linear traffic shifting) or a rolling one,
and rolls it back by itself when an alarm of ``AutoRollbackConfiguration`` fires. By default the
client adds its own alarms on the new fleet's ``Invocation5XXErrors`` and ``ModelLatency``;
``delete`` removes them with the endpoint.

``weights`` moves traffic between production variants (UpdateEndpointWeightsAndCapacities).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from classifier_client.account_settings import (
    LOCAL_STORAGE_SENTENCE,
    AccountSettings,
    check_tags,
    has_local_storage,
    refuse_secrets,
)
from classifier_client.capture import DataCapture
from classifier_client.config import AwsContext, ConfigurationError, unique_name
from classifier_client.endpoints import check_model_data, delete_resources, variant_model_names
from classifier_client.image import pin_image
from classifier_client.variants import Shadow, Variant

logger = logging.getLogger(__name__)

# API reference, TrafficRoutingConfig.WaitIntervalInSeconds and BlueGreenUpdatePolicy.
# TerminationWaitInSeconds: "Valid Range: Minimum value of 0. Maximum value of 3600";
# MaximumExecutionTimeoutInSeconds: "Minimum value of 600. Maximum value of 28800".
MAX_WAIT_S = 3600
MIN_EXECUTION_S, MAX_EXECUTION_S = 600, 28800
# Time the new fleet takes to come up, on top of the waits, before a deployment times out.
PROVISIONING_ALLOWANCE_S = 3600
# CapacitySize percent per mode. TrafficRoutingConfig: CanarySize "must be less than or equal
# to 50% of the variant's total instance count"; LinearStepSize "must be 10-50% of the variant's
# total instance count"; RollingUpdatePolicy.MaximumBatchSize "between 5% to 50%".
PERCENT_LIMITS = {"canary": (1, 50), "linear": (10, 50), "rolling": (5, 50)}
# AutoRollbackConfig.Alarms: "Minimum number of 1 item. Maximum number of 10 items."
MAX_ROLLBACK_ALARMS = 10
# The client's own rollback alarms (monitoring-cloudwatch: ModelLatency "Units: Microseconds";
# Invocation5XXErrors "For each 5xx response, 1 is sent; otherwise, 0", so its Average is the
# error rate).
ALARM_MARK = "-rollback-"
DEFAULT_LATENCY_ALARM_MS = 1000
ERROR_RATE_THRESHOLD = 0.01
ALARM_PERIOD_S = 60
METRIC_NAMESPACE = "AWS/SageMaker"
BUSY_STATUSES = {"Creating", "Updating", "SystemUpdating", "RollingBack"}
POLL_S = 30.0


@dataclass(frozen=True)
class TrafficShift:
    """How SageMaker moves the traffic to the new fleet; default: blue/green all at once."""

    mode: str = "all-at-once"
    percent: int = 100
    seconds: int = 0

    @classmethod
    def parse(cls, mode: str, text: str) -> TrafficShift:
        low, high = PERCENT_LIMITS[mode]
        percent, sep, seconds = text.partition(":")
        if not sep or not percent.strip().isdigit() or not seconds.strip().isdigit():
            raise ConfigurationError(f"--{mode} takes PERCENT:SECONDS, e.g. 10:600; got {text!r}")
        shift = cls(mode, int(percent), int(seconds))
        if not low <= shift.percent <= high:
            raise ConfigurationError(
                f"--{mode} {text}: AWS allows {low}-{high}% of the variant's instances per {mode} step"
            )
        if shift.seconds > MAX_WAIT_S:
            raise ConfigurationError(f"--{mode} {text}: AWS allows a wait of 0-{MAX_WAIT_S} seconds per step")
        return shift

    def steps(self) -> int:
        if self.mode == "canary":
            return 2
        return 1 if self.mode == "all-at-once" else math.ceil(100 / self.percent)

    def execution_timeout(self, termination_wait: int) -> int:
        """MaximumExecutionTimeoutInSeconds: every wait, plus time to bring the fleet up."""
        waits = self.steps() * self.seconds + termination_wait
        if waits + MIN_EXECUTION_S > MAX_EXECUTION_S:
            raise ConfigurationError(
                f"--{self.mode} {self.percent}:{self.seconds} waits {waits} s in all: AWS stops a "
                f"deployment after at most {MAX_EXECUTION_S} s; take larger steps or shorter waits"
            )
        return max(MIN_EXECUTION_S, min(MAX_EXECUTION_S, waits + PROVISIONING_ALLOWANCE_S))

    def policy(self, termination_wait: int) -> dict[str, Any]:
        timeout = self.execution_timeout(termination_wait)
        if self.mode == "rolling":
            return {
                "RollingUpdatePolicy": {
                    "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": self.percent},
                    "WaitIntervalInSeconds": self.seconds,
                    "MaximumExecutionTimeoutInSeconds": timeout,
                }
            }
        routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": self.seconds}
        if self.mode == "canary":
            routing = {**routing, "Type": "CANARY", "CanarySize": self._capacity()}
        elif self.mode == "linear":
            routing = {**routing, "Type": "LINEAR", "LinearStepSize": self._capacity()}
        return {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": termination_wait,
                "MaximumExecutionTimeoutInSeconds": timeout,
            }
        }

    def _capacity(self) -> dict[str, Any]:
        return {"Type": "CAPACITY_PERCENT", "Value": self.percent}


@dataclass
class UpdateSettings:
    """What ``update`` changes; everything it leaves None carries over from the live endpoint."""

    endpoint_name: str
    model_data: str | None = None
    # --variant / --shadow: new models for these existing variants (a weight changes it too).
    variants: tuple[Variant, ...] = ()
    shadows: tuple[Shadow, ...] = ()
    image_uri: str | None = None
    role: str | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    shift: TrafficShift = field(default_factory=TrafficShift)
    termination_wait: int = 0
    rollback_alarms: tuple[str, ...] = ()
    default_alarms: bool = True
    latency_alarm_ms: int = DEFAULT_LATENCY_ALARM_MS
    data_capture: DataCapture | None = None
    capture_percent: int | None = None
    account: AccountSettings = field(default_factory=AccountSettings)

    def check(self) -> None:
        if bool(self.model_data) == bool(self.variants or self.shadows):
            raise ConfigurationError(
                "give --model-data (an endpoint of one model), or --variant NAME=MODEL_DATA[:WEIGHT] / "
                "--shadow NAME=MODEL_DATA:PERCENT for the variants to replace"
            )
        for flag, data in [
            ("--model-data", self.model_data),
            *[(f"--variant {v.name}", v.model_data) for v in self.variants],
            *[(f"--shadow {s.name}", s.model_data) for s in self.shadows],
        ]:
            if data is not None and not data.endswith("/"):
                check_model_data(data, flag)
        if self.instance_count is not None and self.instance_count < 1:
            raise ConfigurationError("--instance-count must be at least 1")
        if not 0 <= self.termination_wait <= MAX_WAIT_S:
            raise ConfigurationError(f"--termination-wait must be 0-{MAX_WAIT_S} seconds")
        if self.shift.mode == "rolling" and self.termination_wait:
            raise ConfigurationError(
                "--termination-wait is blue/green's; a rolling update has no old fleet to keep"
            )
        names = [v.name for v in self.variants] + [s.name for s in self.shadows]
        if len(set(names)) < len(names):
            raise ConfigurationError("a variant is named twice in --variant/--shadow")
        if self.latency_alarm_ms < 1:
            raise ConfigurationError("--latency-alarm-ms must be at least 1")
        if self.data_capture:
            self.data_capture.check()
        if self.capture_percent is not None and not 0 <= self.capture_percent <= 100:
            raise ConfigurationError(f"--capture-percent must be 0-100, got {self.capture_percent}")
        self.shift.execution_timeout(self.termination_wait)
        refuse_secrets(self.environment, "--env")
        self.account.endpoint()
        self.account.model()


# --- requests built from the live resources --------------------------------------------------


def _shaped(value: Any, shape) -> Any:
    """``value`` (a Describe* answer) cut down to what ``shape`` (a Create* input) accepts."""
    if shape.type_name == "structure":
        # An empty list or structure says nothing, and AWS's minimum counts refuse most.
        return {
            k: _shaped(v, shape.members[k])
            for k, v in value.items()
            if k in shape.members and v not in ({}, [])
        }
    if shape.type_name == "list":
        return [_shaped(item, shape.member) for item in value]
    if shape.type_name == "map":
        return {k: _shaped(v, shape.value) for k, v in value.items()}
    return value


def _request_from(sagemaker, operation: str, description: dict[str, Any]) -> dict[str, Any]:
    shape = sagemaker.meta.service_model.operation_model(operation).input_shape
    return _shaped(description, shape)


def _tags(sagemaker, arn: str, extra: tuple[dict[str, str], ...]) -> list[dict[str, str]]:
    """The resource's own tags (AWS's aws: ones cannot be set), then the account's on top."""
    merged: dict[str, str] = {}
    token: dict[str, str] = {}
    while True:
        page = sagemaker.list_tags(ResourceArn=arn, **token)
        merged.update(
            {t["Key"]: t["Value"] for t in page.get("Tags", []) if not t["Key"].lower().startswith("aws:")}
        )
        if not page.get("NextToken"):
            break
        token = {"NextToken": page["NextToken"]}
    merged.update({t["Key"]: t["Value"] for t in extra})
    tags = tuple({"Key": k, "Value": v} for k, v in merged.items())
    check_tags(tags)
    return list(tags)


@dataclass
class LiveEndpoint:
    """DescribeEndpoint and DescribeEndpointConfig of the endpoint as it serves now."""

    endpoint: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def describe(cls, sagemaker, name: str) -> LiveEndpoint:
        from botocore.exceptions import ClientError

        from classifier_client.endpoints import is_gone

        try:
            endpoint = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as error:
            if is_gone(error):
                raise ConfigurationError(f"no endpoint named {name}: `deploy` it first") from error
            raise
        config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        return cls(endpoint, config)

    def require_in_service(self) -> None:
        status = self.endpoint["EndpointStatus"]
        if status != "InService":
            raise ConfigurationError(
                f"endpoint {self.endpoint['EndpointName']} is {status}: SageMaker updates only an "
                "InService endpoint; wait for it (or see its FailureReason) and run update again"
            )

    def production(self) -> list[dict[str, Any]]:
        return list(self.config["ProductionVariants"])

    def shadows(self) -> list[dict[str, Any]]:
        return list(self.config.get("ShadowProductionVariants") or [])

    def serving(self, variant: str) -> dict[str, Any]:
        """DescribeEndpoint's summary of a variant: its current instance count and weight."""
        summaries = self.endpoint.get("ProductionVariants", []) + self.endpoint.get(
            "ShadowProductionVariants", []
        )
        return next((s for s in summaries if s.get("VariantName") == variant), {})

    def model_names(self) -> list[str]:
        return list(dict.fromkeys(v["ModelName"] for v in self.production() + self.shadows()))


def _replacements(settings: UpdateSettings, live: LiveEndpoint) -> dict[str, str]:
    """Variant name -> its new model data; the variants must exist (a blue/green or rolling
    deployment keeps the variant names: deployment-guardrails-exclusions, "your new endpoint
    configuration must have the same variant name as the old endpoint configuration")."""
    production = [v["VariantName"] for v in live.production()]
    shadows = [v["VariantName"] for v in live.shadows()]
    if settings.model_data:
        if len(production) != 1:
            raise ConfigurationError(
                f"endpoint {settings.endpoint_name} has {len(production)} production variants "
                f"({', '.join(production)}): name the one to replace with --variant NAME=MODEL_DATA"
            )
        return {production[0]: settings.model_data}
    given: list[tuple[str, list[str], list[str]]] = [
        ("--variant", [v.name for v in settings.variants], production),
        ("--shadow", [s.name for s in settings.shadows], shadows),
    ]
    for flag, names, existing in given:
        unknown = [name for name in names if name not in existing]
        if unknown:
            kind = "shadow variant" if flag == "--shadow" else "production variant"
            raise ConfigurationError(
                f"{flag} {', '.join(unknown)}: endpoint {settings.endpoint_name} has no such {kind} "
                f"(it has: {', '.join(existing) or 'none'}); an update keeps the variant names: "
                "deploy a new endpoint to change them"
            )
    return {v.name: v.model_data for v in settings.variants} | {
        s.name: s.model_data for s in settings.shadows
    }


def _model_request(
    ctx: AwsContext, settings: UpdateSettings, old_name: str, new_name: str, model_data: str
) -> dict[str, Any]:
    """CreateModel from the variant's live model: its image (unless --image), environment,
    role, VPC, isolation and tags, with the new model data and the command's changes."""
    sagemaker = ctx.client("sagemaker")
    old = sagemaker.describe_model(ModelName=old_name)
    if "PrimaryContainer" not in old:
        raise ConfigurationError(f"model {old_name} is not a single-container model this client deployed")
    request = _request_from(sagemaker, "CreateModel", old)
    account = settings.account.model()
    container = request["PrimaryContainer"]
    if old["PrimaryContainer"].get("Mode") == "MultiModel" and not model_data.endswith("/"):
        raise ConfigurationError(
            f"a multi-model endpoint takes the s3://.../ prefix of its models, got {model_data}"
        )
    if old["PrimaryContainer"].get("Mode") != "MultiModel":
        check_model_data(model_data, "--model-data")
    container.pop("ModelDataSource", None)
    container["ModelDataUrl"] = model_data
    if settings.image_uri:
        container["Image"] = pin_image(ctx, settings.image_uri)
    environment = {**container.get("Environment", {}), **account.environment, **settings.environment}
    refuse_secrets(environment, f"model {old_name}'s environment")
    container["Environment"] = environment
    request.update(ModelName=new_name, ExecutionRoleArn=settings.role or old["ExecutionRoleArn"])
    if account.vpc:
        request["VpcConfig"] = account.vpc
    if account.network_isolation:
        request["EnableNetworkIsolation"] = True
    tags = _tags(sagemaker, old["ModelArn"], account.tags)
    request.pop("Tags", None)
    return {**request, **({"Tags": tags} if tags else {})}


def _variant_request(
    settings: UpdateSettings, live: LiveEndpoint, variant: dict[str, Any], models: dict[str, str]
) -> dict[str, Any]:
    """A variant of the new config: its new model, and the instance count and weight it serves
    with now (autoscaling may have moved them since the config was made)."""
    name = variant["VariantName"]
    changed = {v.name: v for v in settings.variants}
    serving = live.serving(name)
    result = {**variant, "ModelName": models.get(name, variant["ModelName"])}
    if "ServerlessConfig" not in variant:
        if settings.instance_type and name in models:
            result["InstanceType"] = settings.instance_type
        count = (
            settings.instance_count
            or serving.get("DesiredInstanceCount")
            or serving.get("CurrentInstanceCount")
        )
        if count:
            result["InitialInstanceCount"] = count
    weight = changed[name].weight if name in changed else None
    if weight is None:
        weight = serving.get("DesiredWeight", serving.get("CurrentWeight"))
    if weight is not None:
        result["InitialVariantWeight"] = float(weight)
    return result


def _config_request(
    ctx: AwsContext, settings: UpdateSettings, live: LiveEndpoint, name: str, models: dict[str, str]
) -> dict[str, Any]:
    sagemaker = ctx.client("sagemaker")
    request = _request_from(sagemaker, "CreateEndpointConfig", live.config)
    request["EndpointConfigName"] = name
    request["ProductionVariants"] = [_variant_request(settings, live, v, models) for v in live.production()]
    shadows = {s.name: s for s in settings.shadows}
    if live.shadows():
        production_weight = request["ProductionVariants"][0].get("InitialVariantWeight", 1.0)
        request["ShadowProductionVariants"] = [
            {
                **_variant_request(settings, live, v, models),
                **(
                    {"InitialVariantWeight": shadows[v["VariantName"]].weight(production_weight)}
                    if v["VariantName"] in shadows
                    else {}
                ),
            }
            for v in live.shadows()
        ]
    instance_types = [v["InstanceType"] for v in request["ProductionVariants"] if "InstanceType" in v]
    account = settings.account.endpoint_config(instance_types).warn()
    _apply_capture(settings, request, account.output_kms_key)
    if account.volume_kms_key and instance_types:
        request["KmsKeyId"] = account.volume_kms_key
    nvme = [t for t in instance_types if has_local_storage(t)]
    if request.get("KmsKeyId") and nvme:
        logger.warning("KmsKeyId left out for %s: %s", ", ".join(nvme), LOCAL_STORAGE_SENTENCE)
        request.pop("KmsKeyId")
    if "AsyncInferenceConfig" in request and account.output_kms_key:
        request["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"] = account.output_kms_key
    request.pop("Tags", None)
    tags = _tags(sagemaker, live.config["EndpointConfigArn"], account.tags)
    return {**request, **({"Tags": tags} if tags else {})}


def _apply_capture(settings: UpdateSettings, request: dict[str, Any], kms_key: str | None) -> None:
    if settings.data_capture:
        request["DataCaptureConfig"] = settings.data_capture.request(
            kms_key or request.get("DataCaptureConfig", {}).get("KmsKeyId")
        )
    capture = request.get("DataCaptureConfig")
    if settings.capture_percent is not None:
        if not capture:
            raise ConfigurationError(
                "--capture-percent changes a live capture: give --data-capture S3_URI too"
            )
        capture["InitialSamplingPercentage"] = settings.capture_percent
    if capture and kms_key:
        capture["KmsKeyId"] = kms_key


def _check_deployable(ctx: AwsContext, settings: UpdateSettings, live: LiveEndpoint, replaced: dict) -> None:
    """What SageMaker would refuse or silently downgrade, refused before anything is made."""
    production = live.production()
    serverless = any("ServerlessConfig" in v for v in production)
    if settings.shift.mode != "all-at-once" and serverless:
        raise ConfigurationError(
            f"--{settings.shift.mode} shifts traffic by instance capacity; a serverless endpoint has no "
            "instances: update it all at once (the default)"
        )
    if settings.shift.mode == "rolling" and len(production) > 1:
        raise ConfigurationError(
            "--rolling on an endpoint with several production variants: AWS (deployment guardrails, "
            'exclusions) excludes "Multi-variant inference endpoints" from rolling deployments; '
            "use --canary or --linear"
        )
    if settings.shift.mode != "all-at-once":
        for variant in production:
            if variant["VariantName"] not in replaced:
                continue
            count = settings.instance_count or live.serving(variant["VariantName"]).get(
                "CurrentInstanceCount", variant.get("InitialInstanceCount", 1)
            )
            if count < 2:
                # TrafficRoutingConfig: CanarySize "must be less than or equal to 50% of the
                # variant's total instance count" (LinearStepSize 10-50%, MaximumBatchSize 5-50%).
                raise ConfigurationError(
                    f"--{settings.shift.mode} on variant {variant['VariantName']} with {count} instance: AWS "
                    "shifts at most 50% of a variant's instances per step, so a step needs at least 2 "
                    "instances; add --instance-count 2, or update all at once (the default)"
                )
    if settings.instance_type:
        _check_scaling_allows(
            ctx, settings, [v["VariantName"] for v in production if v["VariantName"] in replaced]
        )


def _check_scaling_allows(ctx: AwsContext, settings: UpdateSettings, variants: list[str]) -> None:
    from classifier_client.hosting import SCALABLE_DIMENSION, SCALING_NAMESPACE, variant_resource_id

    ids = [variant_resource_id(settings.endpoint_name, v) for v in variants]
    registered = ctx.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace=SCALING_NAMESPACE, ResourceIds=ids, ScalableDimension=SCALABLE_DIMENSION
    )["ScalableTargets"]
    if registered:
        # endpoint-scaling-update: "If the update would change the instance type for any model
        # that is a target for auto scaling, the update fails."
        raise ConfigurationError(
            f"--instance-type on an autoscaled variant ({', '.join(t['ResourceId'] for t in registered)}): "
            'AWS: "If the update would change the instance type for any model that is a target for '
            'auto scaling, the update fails." Keep the instance type, or delete and deploy again'
        )


# --- rollback alarms -------------------------------------------------------------------------


def rollback_alarm_names(endpoint_name: str, variant: str) -> tuple[str, str]:
    prefix = f"{endpoint_name}{ALARM_MARK}{variant}"
    return f"{prefix}-5xx-errors", f"{prefix}-model-latency"


def _put_default_alarms(
    ctx: AwsContext, settings: UpdateSettings, config_name: str, variants: list[str], tags: list
) -> list[str]:
    """deployment-guardrails-configuration: alarms on the new fleet only, through the dimension
    "EndpointConfigName:{New-Ep-Config}" that CloudWatch publishes "after the new fleet starts
    receiving traffic", so the old fleet cannot stop the deployment."""
    cloudwatch = ctx.client("cloudwatch")
    names = []
    for variant in variants:
        dimensions = [
            {"Name": "EndpointName", "Value": settings.endpoint_name},
            {"Name": "VariantName", "Value": variant},
            {"Name": "EndpointConfigName", "Value": config_name},
        ]
        errors, latency = rollback_alarm_names(settings.endpoint_name, variant)
        common = {
            "Namespace": METRIC_NAMESPACE,
            "Statistic": "Average",
            "Dimensions": dimensions,
            "Period": ALARM_PERIOD_S,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            **({"Tags": tags} if tags else {}),
        }
        cloudwatch.put_metric_alarm(
            AlarmName=errors,
            AlarmDescription=f"rolls back an update of {settings.endpoint_name}: over 1% of the new "
            "fleet's requests answered 5xx in two minutes running",
            MetricName="Invocation5XXErrors",
            Threshold=ERROR_RATE_THRESHOLD,
            EvaluationPeriods=2,
            DatapointsToAlarm=2,
            **common,
        )
        cloudwatch.put_metric_alarm(
            AlarmName=latency,
            AlarmDescription=f"rolls back an update of {settings.endpoint_name}: the new fleet's mean "
            f"model latency over {settings.latency_alarm_ms} ms in 2 of 3 minutes",
            MetricName="ModelLatency",
            Threshold=settings.latency_alarm_ms * 1000.0,
            EvaluationPeriods=3,
            DatapointsToAlarm=2,
            Unit="Microseconds",
            **common,
        )
        names += [errors, latency]
    return names


def delete_rollback_alarms(ctx: AwsContext, endpoint_name: str) -> list[str]:
    """The alarms ``update`` made for this endpoint (by name and by their EndpointName)."""
    cloudwatch = ctx.client("cloudwatch")
    prefix = f"{endpoint_name}{ALARM_MARK}"
    names = [
        alarm["AlarmName"]
        for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix)
        for alarm in page.get("MetricAlarms", [])
        if {"Name": "EndpointName", "Value": endpoint_name} in alarm.get("Dimensions", [])
    ]
    if names:
        cloudwatch.delete_alarms(AlarmNames=names)
    return [f"alarm {name}" for name in names]


# --- update --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    state: str  # completed | rolled back | failed
    status: str
    endpoint_config: str
    reason: str = ""
    alarms: tuple[str, ...] = ()


def update(
    ctx: AwsContext,
    settings: UpdateSettings,
    *,
    wait: bool = False,
    poll_s: float = POLL_S,
    report: Callable[[str], None] = logger.warning,
) -> dict[str, Any]:
    """New models for the replaced variants, a new endpoint config, UpdateEndpoint; with
    ``wait``, follow the deployment to its end, then delete what it left unused."""
    settings.check()
    sagemaker = ctx.client("sagemaker")
    live = LiveEndpoint.describe(sagemaker, settings.endpoint_name)
    live.require_in_service()
    replaced = _replacements(settings, live)
    _check_deployable(ctx, settings, live, replaced)
    old_models = {v["VariantName"]: v["ModelName"] for v in live.production() + live.shadows()}
    config_name = unique_name(settings.endpoint_name)
    models = variant_model_names(settings.endpoint_name, list(replaced), config_name)
    requests = [_model_request(ctx, settings, old_models[v], models[v], data) for v, data in replaced.items()]
    config = _config_request(ctx, settings, live, config_name, models)
    tags = settings.account.endpoint().tag_list()
    alarms = list(settings.rollback_alarms)
    production_replaced = [v["VariantName"] for v in live.production() if v["VariantName"] in replaced]
    if settings.default_alarms:
        alarms += [n for v in production_replaced for n in rollback_alarm_names(settings.endpoint_name, v)]
    if len(alarms) > MAX_ROLLBACK_ALARMS:
        raise ConfigurationError(
            f"{len(alarms)} rollback alarms: AWS (AutoRollbackConfig) takes at most {MAX_ROLLBACK_ALARMS}"
        )
    deployment = settings.shift.policy(settings.termination_wait)
    if alarms:
        deployment["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    created: list[str] = []
    try:
        for request in requests:
            sagemaker.create_model(**request)
            created.append(request["ModelName"])
        sagemaker.create_endpoint_config(**config)
        if settings.default_alarms:
            made = _put_default_alarms(ctx, settings, config_name, production_replaced, tags)
            report(f"rollback alarms made by sm-classifier (deleted with the endpoint): {', '.join(made)}")
        started = dt.datetime.now(dt.UTC)
        sagemaker.update_endpoint(
            EndpointName=settings.endpoint_name, EndpointConfigName=config_name, DeploymentConfig=deployment
        )
    except Exception:
        # Refused: what this update made is removed; the endpoint serves as before.
        delete_resources(sagemaker, [config_name], created)
        raise
    result: dict[str, Any] = {
        "endpoint": settings.endpoint_name,
        "endpoint_config": config_name,
        "previous_endpoint_config": live.endpoint["EndpointConfigName"],
        "models": models,
        "deployment": settings.shift.mode,
        "rollback_alarms": alarms,
    }
    if not wait:
        return {**result, "status": "Updating"}
    timeout = settings.shift.execution_timeout(settings.termination_wait) + MAX_WAIT_S
    outcome = follow(ctx, settings.endpoint_name, config_name, alarms, started, poll_s, timeout, report)
    result.update(status=outcome.status, outcome=outcome.state, reason=outcome.reason)
    if outcome.alarms:
        result["alarms_fired"] = list(outcome.alarms)
    in_use = [
        v["ModelName"] for v in config["ProductionVariants"] + config.get("ShadowProductionVariants", [])
    ]
    result["deleted"] = _tidy(sagemaker, outcome, live, config_name, list(models.values()), in_use)
    return result


def follow(
    ctx: AwsContext,
    endpoint_name: str,
    config_name: str,
    alarms: list[str],
    started: dt.datetime,
    poll_s: float,
    timeout_s: float,
    report: Callable[[str], None],
) -> Outcome:
    """Poll DescribeEndpoint until the deployment ends; the endpoint then serves the new config
    (completed) or, after an automatic rollback, the old one."""
    sagemaker = ctx.client("sagemaker")
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        status = endpoint["EndpointStatus"]
        progress = _progress(endpoint)
        if progress != last:
            report(progress)
            last = progress
        if status not in BUSY_STATUSES:
            break
        if time.monotonic() > deadline:
            raise ConfigurationError(f"endpoint {endpoint_name} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)
    fired = _fired(ctx, alarms, started)
    reason = endpoint.get("FailureReason", "")
    if status == "InService" and endpoint["EndpointConfigName"] == config_name:
        return Outcome("completed", status, config_name)
    state = "rolled back" if status == "InService" else "failed"
    if fired and not reason:
        reason = f"alarm {', '.join(fired)} fired"
    return Outcome(state, status, endpoint["EndpointConfigName"], reason or "no reason given", tuple(fired))


def _progress(endpoint: dict[str, Any]) -> str:
    pending = endpoint.get("PendingDeploymentSummary") or {}
    variants = pending.get("ProductionVariants") or endpoint.get("ProductionVariants") or []
    steps = [
        f"{v.get('VariantName')}: {s.get('Status')}"
        + (f" ({s['StatusMessage']})" if s.get("StatusMessage") else "")
        for v in variants
        for s in v.get("VariantStatus", [])
    ]
    return f"{endpoint['EndpointName']}: {endpoint['EndpointStatus']}" + (
        f"; {'; '.join(steps)}" if steps else ""
    )


def _fired(ctx: AwsContext, alarms: list[str], started: dt.datetime) -> list[str]:
    """The rollback alarms in ALARM now, or that went to ALARM since the update started (after
    a rollback the new fleet's metrics stop, and its alarms go back to OK)."""
    if not alarms:
        return []
    cloudwatch = ctx.client("cloudwatch")
    described = cloudwatch.describe_alarms(AlarmNames=alarms).get("MetricAlarms", [])
    fired = {alarm["AlarmName"] for alarm in described if alarm.get("StateValue") == "ALARM"}
    for name in set(alarms) - fired:
        history = cloudwatch.describe_alarm_history(
            AlarmName=name, HistoryItemType="StateUpdate", StartDate=started, EndDate=dt.datetime.now(dt.UTC)
        ).get("AlarmHistoryItems", [])
        if any(_went_to_alarm(item) for item in history):
            fired.add(name)
    return [name for name in alarms if name in fired]


def _went_to_alarm(item: dict[str, Any]) -> bool:
    """A StateUpdate history item whose new state is ALARM (its HistoryData is JSON)."""
    try:
        return json.loads(item.get("HistoryData") or "{}").get("newState", {}).get("stateValue") == "ALARM"
    except (ValueError, AttributeError):
        return str(item.get("HistorySummary", "")).endswith("to ALARM")


def _tidy(
    sagemaker,
    outcome: Outcome,
    live: LiveEndpoint,
    config_name: str,
    new_models: list[str],
    in_use: list[str],
) -> list[str]:
    """After a completed update, the old config and the models the new one no longer uses;
    after a rollback, the new ones. A failed rollback leaves both (the endpoint serves a mix)."""
    if outcome.state == "completed":
        unused = [m for m in live.model_names() if m not in in_use]
        return delete_resources(sagemaker, [live.endpoint["EndpointConfigName"]], unused)
    if outcome.state == "rolled back":
        return delete_resources(sagemaker, [config_name], new_models)
    return []


# --- weights --------------------------------------------------------------------------------


def set_weights(
    ctx: AwsContext, endpoint_name: str, weights: dict[str, float], *, wait: bool = False
) -> dict[str, Any]:
    """UpdateEndpointWeightsAndCapacities: the named variants' weights; the others keep theirs."""
    from classifier_client.endpoints import wait_in_service

    sagemaker = ctx.client("sagemaker")
    live = LiveEndpoint.describe(sagemaker, endpoint_name)
    live.require_in_service()
    current = {
        v["VariantName"]: float(
            live.serving(v["VariantName"]).get("CurrentWeight", v.get("InitialVariantWeight", 1))
        )
        for v in live.production()
    }
    unknown = sorted(set(weights) - set(current))
    if unknown:
        shadows = {v["VariantName"] for v in live.shadows()}
        hint = (
            " (a shadow variant's share is set by deploy/update --shadow)" if set(unknown) & shadows else ""
        )
        raise ConfigurationError(
            f"endpoint {endpoint_name} has no production variant {', '.join(unknown)} "
            f"(it has: {', '.join(current)}){hint}"
        )
    after = {**current, **weights}
    if not any(after.values()):
        raise ConfigurationError("every production variant would have weight 0: the traffic would go nowhere")
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=endpoint_name,
        DesiredWeightsAndCapacities=[{"VariantName": n, "DesiredWeight": w} for n, w in weights.items()],
    )
    if wait:
        wait_in_service(sagemaker, endpoint_name)
    total = sum(after.values())
    return {
        "endpoint": endpoint_name,
        "weights": after,
        "traffic_share": {name: round(weight / total, 4) for name, weight in after.items()},
        "status": sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"],
    }
