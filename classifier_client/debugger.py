"""Debugger hook, custom rules and profiler settings for a CreateTrainingJob request.

The collections come from ``classifier.debugger_contract.hook_collections`` (through
``request_collection_configurations``) — the same mapping the image's local ``debug=true``
hook uses — so a SageMaker job saves exactly the tensors our rules read. The training
program evaluates our rules (``classifier.debugging.rules``) at the end of every job that
saved tensors: that is the default, and since AWS closed SageMaker Debugger to new
customers on 2026-07-30 it is the only way most accounts get these checks. Accounts
that still have Debugger can also attach the same rules as SageMaker *custom rules*: AWS's
custom-rule evaluator image runs ``rule_to_invoke`` from our rule file (``source_s3_uri``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from classifier.constants import HOOK_LOCAL_PATH
from classifier.debugger_contract import (
    INITIAL_STEPS,
    RULE_NAMES,
    TENSOR_SAVE_INTERVAL,
    request_collection_configurations,
)

RULE_INSTANCE_TYPE = "ml.t3.medium"
# Developer guide, "Use the Debugger APIs to run your own custom rules": custom rules run in
# AWS's rule-evaluator image ("image_uri ... the image of the container that has the logic of
# understanding your custom rule"), e.g.
# 759209512951.dkr.ecr.us-west-2.amazonaws.com/sagemaker-debugger-rule-evaluator:latest.
# The account differs per region ("Amazon SageMaker Debugger image URIs for custom rule
# evaluators"); only the documented one is built in, any other is passed explicitly.
RULE_EVALUATOR_REPOSITORY = "sagemaker-debugger-rule-evaluator:latest"
RULE_EVALUATOR_ACCOUNTS = {"us-west-2": "759209512951"}
RULE_VOLUME_SIZE_GB = 30
PROFILING_INTERVALS_MS = (100, 200, 500, 1000, 5000, 60000)  # the values the API accepts
DEFAULT_PROFILING_INTERVAL_MS = 500


def rule_class_name(rule: str) -> str:
    """``loss_not_decreasing`` -> ``LossNotDecreasing`` (the class SageMaker invokes)."""
    return "".join(part.capitalize() for part in rule.split("_"))


def parse_rule_names(text: str | None) -> list[str]:
    """``all``, ``none``/empty, or a comma list of our rule names."""
    if not text or text.strip().lower() == "none":
        return []
    if text.strip().lower() == "all":
        return list(RULE_NAMES)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in RULE_NAMES]
    if unknown:
        raise ValueError(f"unknown debugger rule(s) {unknown}; known: {', '.join(RULE_NAMES)}")
    return names


@dataclass(frozen=True)
class DebuggerSettings:
    """What the ``train`` step asks of Debugger; ``None`` fields are left out of the request."""

    hook: bool = True
    # The runtime's own defaults, so a cloud job saves what a local `debug=true` job saves.
    tensor_save_interval: int = TENSOR_SAVE_INTERVAL
    initial_steps: tuple[int, ...] = INITIAL_STEPS
    rules: tuple[str, ...] = ()
    rule_parameters: dict[str, dict[str, str]] = field(default_factory=dict)
    rule_instance_type: str = RULE_INSTANCE_TYPE
    rule_evaluator_image: str | None = None
    profiler: bool = True
    profiling_interval_ms: int = DEFAULT_PROFILING_INTERVAL_MS

    def __post_init__(self):
        if self.profiling_interval_ms not in PROFILING_INTERVALS_MS:
            raise ValueError(
                f"profiling interval must be one of {PROFILING_INTERVALS_MS} ms, "
                f"got {self.profiling_interval_ms}"
            )
        if self.rules and not self.hook:
            raise ValueError("debugger rules need the debugger hook (drop --no-debugger-hook)")


def sdk_collection_configurations(settings: DebuggerSettings) -> list[dict]:
    """The request's CollectionConfigurations with the snake_case field names of
    ``sagemaker.core.shapes.CollectionConfiguration``."""
    configurations = request_collection_configurations(
        tensor_save_interval=settings.tensor_save_interval, initial_steps=settings.initial_steps
    )
    return [
        {
            "collection_name": item["CollectionName"],
            "collection_parameters": item["CollectionParameters"],
        }
        for item in configurations
    ]


def debug_hook_config(settings: DebuggerSettings, s3_output_path: str) -> dict | None:
    """The DebugHookConfig (snake_case, for sagemaker.core.shapes), or None when off."""
    if not settings.hook:
        return None
    return {
        "s3_output_path": s3_output_path,
        "local_path": HOOK_LOCAL_PATH,
        "collection_configurations": sdk_collection_configurations(settings),
    }


def rule_evaluator_image(region: str, override: str | None) -> str:
    """AWS's custom-rule evaluator image for ``region``, or the one the user named."""
    if override:
        return override
    account = RULE_EVALUATOR_ACCOUNTS.get(region)
    if account is None:
        raise ValueError(
            f"custom Debugger rule jobs in {region} need AWS's rule-evaluator image for that "
            'region: look it up in the developer guide ("Amazon SageMaker Debugger image URIs '
            'for custom rule evaluators") and pass --rule-evaluator-image URI, or use '
            "--debugger-rules none (every job evaluates the rules itself at its end)"
        )
    return f"{account}.dkr.ecr.{region}.amazonaws.com/{RULE_EVALUATOR_REPOSITORY}"


def debug_rule_configurations(
    settings: DebuggerSettings, image_uri: str, rule_source_s3_uri: str | None
) -> list[dict]:
    """One custom rule per name: AWS's evaluator image (``image_uri``) runs ``rule_to_invoke``
    from our rule file.

    ``source_s3_uri`` and ``rule_to_invoke`` are the parameters SageMaker's custom-rule
    evaluators read; per-rule parameters (thresholds etc.) go next to them as strings.
    """
    configurations = []
    for rule in settings.rules:
        if rule_source_s3_uri is None:
            raise ValueError("custom rules need the rule source uploaded to S3 first")
        parameters = {
            "source_s3_uri": rule_source_s3_uri,
            "rule_to_invoke": rule_class_name(rule),
            **{k: str(v) for k, v in settings.rule_parameters.get(rule, {}).items()},
        }
        configurations.append(
            {
                "rule_configuration_name": rule,
                "rule_evaluator_image": image_uri,
                "instance_type": settings.rule_instance_type,
                "volume_size_in_gb": RULE_VOLUME_SIZE_GB,
                "rule_parameters": parameters,
            }
        )
    return configurations


def profiler_config(settings: DebuggerSettings, s3_output_path: str) -> dict:
    """ProfilerConfig: system metrics at the interval, dataloader timings; or off."""
    if not settings.profiler:
        return {"disable_profiler": True}
    return {
        "s3_output_path": s3_output_path,
        "profiling_interval_in_milliseconds": settings.profiling_interval_ms,
        "profiling_parameters": {
            "DataloaderProfilingConfig": json.dumps({"StartStep": 0, "NumSteps": 100}),
        },
    }
