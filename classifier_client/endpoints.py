"""Deploy, invoke and delete a SageMaker endpoint.

An endpoint is three kinds of resources (Model -> EndpointConfig -> Endpoint), made with boto3;
``delete`` removes them all, with what the client made beside them (scaling, alarms). An
endpoint serves one model, or several production variants that share its traffic by weight,
plus at most one shadow variant; with data capture it records what it was sent and answered.
``update`` (classifier_client.deployments) ships a new model to it without downtime. The same
container run on this machine is ``local_endpoints``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from classifier.constants import MODEL_SERVER_TIMEOUT_ENV, MODEL_SERVER_WORKERS_ENV
from classifier_client.account_settings import AccountSettings, RequestSettings, refuse_secrets
from classifier_client.capture import DataCapture
from classifier_client.config import AwsContext, ConfigurationError, unique_name, wait_with
from classifier_client.hosting import HostingOptions
from classifier_client.image import DEFAULT_IMAGE_NAME, DEFAULT_TAG, SERVING_SUFFIX, pin_image
from classifier_client.variants import DEFAULT_VARIANT, Shadow, Variant, check_variants

logger = logging.getLogger(__name__)

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_TOP_K = 3
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
FALLBACK_CONTENT_TYPE = "application/x-image"
# What a local endpoint runs without an image named: the image `make image` builds (or, asked
# for the serving image, the one `make image-serve` builds).
LOCAL_IMAGE = f"{DEFAULT_IMAGE_NAME}:{DEFAULT_TAG}"
LOCAL_SERVING_IMAGE = f"{DEFAULT_IMAGE_NAME}{SERVING_SUFFIX}:{DEFAULT_TAG}"


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
    # The one model of an endpoint without --variant (its variant is AllTraffic).
    model_data: str | None
    endpoint_name: str
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    environment: dict[str, str] = field(default_factory=dict)
    hosting: HostingOptions = field(default_factory=HostingOptions)
    # VPC, KMS keys, isolation and tags (docs/security.md); none by default.
    account: AccountSettings = field(default_factory=AccountSettings)
    # --variant: production variants sharing the traffic by weight (instead of model_data).
    variants: tuple[Variant, ...] = ()
    shadows: tuple[Shadow, ...] = ()
    data_capture: DataCapture | None = None
    # Without an image named: the serving image's repository instead of the full image's.
    serving_image: bool = False

    def production_variants(self) -> tuple[Variant, ...]:
        return self.variants or (Variant(DEFAULT_VARIANT, self.model_data or ""),)

    def model_request(self, role: str, name: str, model_data: str | None = None) -> dict[str, Any]:
        """CreateModel: our image by digest with the model, the account's VPC, isolation, tags."""
        account = self.account.model()
        container = {
            "Image": self.image_uri,
            "ModelDataUrl": model_data or self.model_data,
            "Environment": {**account.environment, **self.hosting.server_environment(), **self.environment},
        }
        if self.hosting.multi_model:
            # ModelDataUrl is then the S3 prefix holding every model.tar.gz; TargetModel picks one.
            container["Mode"] = "MultiModel"
        return model_request(name, container, role, account)

    def endpoint_config_request(self, name: str, models: dict[str, str] | None = None) -> dict[str, Any]:
        """CreateEndpointConfig: the variants (``models``: variant name -> model name; all ``name``
        without), the hosting options, data capture, the account's keys and tags."""
        account = self.account.endpoint_config([self.instance_type]).warn()
        models = models or {}
        production = self.production_variants()
        request: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": [self._variant(v, models.get(v.name, name)) for v in production],
            **self.hosting.endpoint_config_extras(),
        }
        if self.shadows:
            request["ShadowProductionVariants"] = [
                self._variant(Variant(s.name, s.model_data, s.weight(production[0].share)), models[s.name])
                for s in self.shadows
            ]
        if self.data_capture:
            request["DataCaptureConfig"] = self.data_capture.request(account.output_kms_key)
        if account.volume_kms_key and not self.hosting.serverless:
            request["KmsKeyId"] = account.volume_kms_key
        if "AsyncInferenceConfig" in request and account.output_kms_key:
            request["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"] = account.output_kms_key
        if account.tags:
            request["Tags"] = account.tag_list()
        return request

    def _variant(self, variant: Variant, model_name: str) -> dict[str, Any]:
        base: dict[str, Any] = {
            "VariantName": variant.name,
            "ModelName": model_name,
            "InitialInstanceCount": self.instance_count,
            "InstanceType": self.instance_type,
        }
        if self.variants or self.shadows:
            base["InitialVariantWeight"] = variant.share
        return self.hosting.variant(base)

    def check(self, wait: bool = True) -> None:
        """Everything refused offline, before any request."""
        hosting = self.hosting
        hosting.validate(self.instance_type)
        # The account's settings are resolved, and refused where AWS would refuse them, offline.
        self.account.endpoint_config([self.instance_type])
        self.account.endpoint()
        model = self.account.model()
        refuse_secrets({**model.environment, **self.environment}, "--env")
        if hosting.serverless and (model.vpc or model.network_isolation):
            raise ConfigurationError(
                "--serverless with a VPC or network isolation (flags or the defaults file): AWS, "
                'Serverless Inference feature exclusions: "VPC configuration, network isolation" are '
                "among the features Serverless Inference does not support; deploy on instances instead"
            )
        self._check_models()
        if self.instance_count < 1:
            raise ConfigurationError("--instance-count must be at least 1")
        if hosting.autoscale and not wait:
            # Application Auto Scaling registers only an InService variant.
            raise ConfigurationError("--autoscale waits for InService: drop --no-wait")
        if self.data_capture:
            self.data_capture.check()
        _check_exclusions(self)

    def _check_models(self) -> None:
        if bool(self.model_data) == bool(self.variants):
            raise ConfigurationError("give --model-data, or one --variant NAME=MODEL_DATA[:WEIGHT] per model")
        check_variants(self.variants, self.shadows)
        for flag, data in [
            ("--model-data", self.model_data),
            *[(f"--variant {v.name}", v.model_data) for v in self.variants],
            *[(f"--shadow {s.name}", s.model_data) for s in self.shadows],
        ]:
            if data is not None:
                check_model_data(data, flag, self.hosting.multi_model)


def check_model_data(data: str, flag: str, multi_model: bool = False) -> None:
    if multi_model:
        if not data.startswith("s3://") or not data.endswith("/"):
            raise ConfigurationError(
                f"{flag} with --multi-model takes the s3://.../ prefix that holds the model.tar.gz "
                f"files, got {data!r}"
            )
    elif not data.startswith("s3://") or not data.endswith(".tar.gz"):
        raise ConfigurationError(
            f"{flag} must be the s3://.../model.tar.gz of a training job, got {data!r} "
            "(a local archive needs --local)"
        )


def _check_exclusions(settings: DeploySettings) -> None:
    """What SageMaker does not serve with several variants, shadows or data capture."""
    hosting = settings.hosting
    if hosting.serverless and (len(settings.variants) > 1 or settings.shadows or settings.data_capture):
        # "Serverless Inference": "Some of the features currently available for SageMaker AI
        # Real-time Inference are not supported for Serverless Inference, including [...]
        # data capture, multiple production variants".
        raise ConfigurationError(
            "--serverless with several --variant, a --shadow or --data-capture: AWS (Serverless "
            'Inference) lists "data capture, multiple production variants" among the features '
            "serverless endpoints do not support; deploy on instances instead"
        )
    if settings.shadows and hosting.async_output:
        # "Shadow tests": asynchronous inference is among the features a shadow test refuses.
        raise ConfigurationError(
            "--shadow with --async-output: AWS does not run shadow variants on asynchronous "
            "endpoints (shadow tests exclude asynchronous inference)"
        )


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


def model_names(settings: DeploySettings, resource_name: str) -> dict[str, str]:
    """One model per variant: the endpoint config's own name for an endpoint of one model."""
    if not settings.variants and not settings.shadows:
        return {DEFAULT_VARIANT: resource_name}
    names = [v.name for v in settings.production_variants()] + [s.name for s in settings.shadows]
    return variant_model_names(settings.endpoint_name, names, resource_name)


def variant_model_names(endpoint_name: str, variants: list[str], resource_name: str) -> dict[str, str]:
    """A unique model name per variant, readable where the names allow it."""
    models = {name: unique_name(f"{endpoint_name[:24]}-{name}") for name in variants}
    if len(set(models.values())) < len(models):  # long variant names cut to the same prefix
        models = {name: f"{resource_name[:58]}-v{i}" for i, name in enumerate(variants)}
    return models


def deploy(ctx: AwsContext, settings: DeploySettings, *, wait: bool = True) -> dict[str, Any]:
    """Create the models, the EndpointConfig and the Endpoint; wait for InService unless told
    not to. Plain boto3 calls: the requests are small, and the waiter reports a failed endpoint
    with its FailureReason."""
    settings.check(wait)
    role = ctx.require_role()
    settings = replace(settings, image_uri=pin_image(ctx, settings.image_uri, settings.serving_image))
    sagemaker = ctx.client("sagemaker")
    # Model and config names change per deploy so an endpoint can be updated in place later.
    resource_name = unique_name(settings.endpoint_name)
    models = model_names(settings, resource_name)
    sources = {v.name: v.model_data for v in settings.production_variants()}
    sources.update({s.name: s.model_data for s in settings.shadows})
    for variant, model in models.items():
        sagemaker.create_model(**settings.model_request(role, model, sources[variant]))
    sagemaker.create_endpoint_config(**settings.endpoint_config_request(resource_name, models))
    endpoint_tags = settings.account.endpoint().tag_list()
    sagemaker.create_endpoint(
        EndpointName=settings.endpoint_name,
        EndpointConfigName=resource_name,
        **({"Tags": endpoint_tags} if endpoint_tags else {}),
    )
    if wait:
        wait_in_service(sagemaker, settings.endpoint_name)
    status = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)["EndpointStatus"]
    result: dict[str, Any] = {
        "endpoint": settings.endpoint_name,
        "endpoint_config": resource_name,
        "model": models[DEFAULT_VARIANT] if set(models) == {DEFAULT_VARIANT} else models,
        "status": status,
    }
    if settings.hosting.autoscale:
        from classifier_client.hosting import enable_autoscaling

        scaling = {
            v.name: enable_autoscaling(
                ctx, settings.endpoint_name, v.name, settings.hosting, tags=endpoint_tags
            )
            for v in settings.production_variants()
        }
        result["autoscaling"] = scaling[DEFAULT_VARIANT] if not settings.variants else scaling
    return result


def wait_in_service(sagemaker, endpoint_name: str) -> None:
    # Creating an endpoint takes minutes: poll every 30 s for up to an hour.
    wait_with(
        sagemaker, "endpoint_in_service", f"endpoint {endpoint_name} did not come InService", 120,
        EndpointName=endpoint_name,
    )  # fmt: skip


def invoke(
    ctx: AwsContext,
    endpoint_name: str,
    image: Path,
    top_k: int = DEFAULT_TOP_K,
    target_model: str | None = None,
    target_variant: str | None = None,
) -> dict[str, Any]:
    """One image through sagemaker-runtime InvokeEndpoint; the server's JSON back, with the
    variant that answered (``invoked_variant``) where SageMaker names it.

    ``target_model``: on a multi-model endpoint, the model.tar.gz (relative to the endpoint's
    S3 prefix) to answer with; SageMaker loads it on first use. ``target_variant``: API
    reference, InvokeEndpoint.TargetVariant: "Specify the production variant to send the
    inference request to when invoking an endpoint that is running two or more variants. Note
    that this parameter overrides the default behavior for the endpoint, which is to distribute
    the invocation traffic based on the variant weights."
    """
    body = read_image(image)
    extra = {"TargetModel": target_model} if target_model else {}
    if target_variant:
        extra["TargetVariant"] = target_variant
    response = ctx.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint_name,
        Body=body,
        ContentType=content_type_for(image),
        Accept="application/json",
        CustomAttributes=f"top_k={top_k}",
        **extra,
    )
    answer = json.loads(response["Body"].read())
    if isinstance(answer, dict) and response.get("InvokedProductionVariant"):
        answer = {**answer, "invoked_variant": response["InvokedProductionVariant"]}
    return answer


def is_gone(error) -> bool:
    """A ClientError that says the resource does not exist (SageMaker answers ValidationException)."""
    message = error.response.get("Error", {}).get("Message", "")
    return "Could not find" in message or "does not exist" in message


def delete(ctx: AwsContext, endpoint_name: str) -> list[str]:
    """Delete the endpoint, its config, its models (every variant's, shadows too), its scaling
    and the rollback alarms ``update`` made for it; what is already gone is skipped."""
    from botocore.exceptions import ClientError

    from classifier_client.deployments import delete_rollback_alarms
    from classifier_client.hosting import disable_autoscaling

    sagemaker = ctx.client("sagemaker")
    try:
        config_name = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    except ClientError as error:
        if is_gone(error):
            raise ConfigurationError(f"no endpoint named {endpoint_name}") from error
        raise
    try:
        config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        variants = config["ProductionVariants"] + config.get("ShadowProductionVariants", [])
        model_names = list(dict.fromkeys(v["ModelName"] for v in variants))
        variant_names = [v["VariantName"] for v in config["ProductionVariants"]]
    except ClientError as error:
        if not is_gone(error):
            raise
        model_names, variant_names = [], [DEFAULT_VARIANT]
    # A scalable target outlives its endpoint: remove it (and its policy) first.
    deleted = disable_autoscaling(ctx, endpoint_name, variant_names)
    sagemaker.delete_endpoint(EndpointName=endpoint_name)
    deleted.append(f"endpoint {endpoint_name}")
    deleted += delete_resources(sagemaker, [config_name], model_names)
    deleted += delete_rollback_alarms(ctx, endpoint_name)
    return deleted


def delete_resources(sagemaker, config_names: list[str], model_names: list[str]) -> list[str]:
    """Delete endpoint configs and models; those already gone are skipped."""
    from botocore.exceptions import ClientError

    deleted = []
    for kind, call, key, name in [
        *[
            ("endpoint config", sagemaker.delete_endpoint_config, "EndpointConfigName", c)
            for c in config_names
        ],
        *[("model", sagemaker.delete_model, "ModelName", m) for m in model_names],
    ]:
        try:
            call(**{key: name})
            deleted.append(f"{kind} {name}")
        except ClientError as error:
            if not is_gone(error):
                raise
    return deleted


def read_image(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read {path}: {error}") from error


def format_predictions(image: Path, result: dict[str, Any]) -> str:
    """``digit_0001.png: 3 (0.981), 8 (0.012), 5 (0.004)``."""
    predictions = result.get("predictions", [])
    ranked = ", ".join(f"{p['label']} ({p['probability']:.3f})" for p in predictions)
    variant = f" [{result['invoked_variant']}]" if result.get("invoked_variant") else ""
    return f"{image}: {ranked or 'no predictions'}{variant}"
