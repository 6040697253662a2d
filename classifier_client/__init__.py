"""The laptop/notebook side of the image: upload data, push the image, tune, train with
Debugger, deploy, invoke and delete, on SageMaker or in SDK local mode.

From Python (docs/sagemaker.md, "From Python")::

    import classifier_client as clf

    ctx = clf.aws_context(region="eu-west-1", role_arn=ROLE)
    job = clf.train(ctx, clf.TrainingSettings(image_uri=None, channels=CHANNELS), wait=True)

Every call takes an :class:`AwsContext` and the settings it needs; the settings check
themselves when made, with the CLI's messages, and raise :class:`ConfigurationError` before any
request. ``train``, ``tune``, ``best``, ``transform``, ``weights`` and ``captured`` are
``training.start_training_job``, ``tuning.start_tuning_job``, ``tuning.best_training_job``,
``batch_transform.create_transform_job``, ``deployments.set_weights`` and ``review.review_captured``;
``deploy``, ``invoke``, ``delete`` and ``update`` keep their modules' names. Local mode is in
the modules (``training.train_locally``, ``local_tuning``, ``local_endpoints``). Each name is
imported on first use, so ``import classifier_client`` loads neither boto3 nor the SDK.

Runs in the SDK environment (``.venv-sdk``: sagemaker 3.x, boto3). It never imports torch or
smdebug: of the runtime package it imports the top-level contract modules
(``classifier.constants``, ``metric_definitions``, ``hyperparameter_schema``,
``debugger_contract``, ``archives``, ``redaction``, ``opt_ml``), and the local tuner the
torch-free MLflow watcher of ``classifier.watching`` (tests/unit/test_layers.py holds the rule).
A regulated account's settings (VPC, KMS, isolation, tags) come from ``account_settings``
(docs/security.md).
"""

from __future__ import annotations

from importlib import import_module

# typing.TYPE_CHECKING without importing typing: type checkers take any name spelled so as True.
TYPE_CHECKING = False
# Public name -> (module, name there).
_EXPORTS = {
    "aws_context": ("classifier_client.config", "aws_context"),
    "AwsContext": ("classifier_client.config", "AwsContext"),
    "ConfigurationError": ("classifier_client.config", "ConfigurationError"),
    "train": ("classifier_client.training", "start_training_job"),
    "TrainingSettings": ("classifier_client.training", "TrainingSettings"),
    "Hyperparameters": ("classifier_client.training", "Hyperparameters"),
    "DebuggerSettings": ("classifier_client.debugger", "DebuggerSettings"),
    "WatchSettings": ("classifier_client.watching", "WatchSettings"),
    "AccountSettings": ("classifier_client.account_settings", "AccountSettings"),
    "tune": ("classifier_client.tuning", "start_tuning_job"),
    "best": ("classifier_client.tuning", "best_training_job"),
    "TuningSettings": ("classifier_client.tuning", "TuningSettings"),
    "SearchSettings": ("classifier_client.tuning", "SearchSettings"),
    "Range": ("classifier_client.ranges", "Range"),
    "strategy_named": ("classifier_client.strategies", "strategy_named"),
    "deploy": ("classifier_client.endpoints", "deploy"),
    "invoke": ("classifier_client.endpoints", "invoke"),
    "delete": ("classifier_client.endpoints", "delete"),
    "DeploySettings": ("classifier_client.endpoints", "DeploySettings"),
    "HostingOptions": ("classifier_client.hosting", "HostingOptions"),
    "Variant": ("classifier_client.variants", "Variant"),
    "Shadow": ("classifier_client.variants", "Shadow"),
    "DataCapture": ("classifier_client.capture", "DataCapture"),
    "transform": ("classifier_client.batch_transform", "create_transform_job"),
    "TransformSettings": ("classifier_client.batch_transform", "TransformSettings"),
    "update": ("classifier_client.deployments", "update"),
    "weights": ("classifier_client.deployments", "set_weights"),
    "UpdateSettings": ("classifier_client.deployments", "UpdateSettings"),
    "TrafficShift": ("classifier_client.deployments", "TrafficShift"),
    "captured": ("classifier_client.review", "review_captured"),
}

__all__ = [
    "AccountSettings",
    "AwsContext",
    "ConfigurationError",
    "DataCapture",
    "DebuggerSettings",
    "DeploySettings",
    "HostingOptions",
    "Hyperparameters",
    "Range",
    "SearchSettings",
    "Shadow",
    "TrafficShift",
    "TrainingSettings",
    "TransformSettings",
    "TuningSettings",
    "UpdateSettings",
    "Variant",
    "WatchSettings",
    "aws_context",
    "best",
    "captured",
    "delete",
    "deploy",
    "invoke",
    "strategy_named",
    "train",
    "transform",
    "tune",
    "update",
    "weights",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from typing import Any

    from classifier_client.account_settings import AccountSettings
    from classifier_client.batch_transform import TransformSettings
    from classifier_client.batch_transform import create_transform_job as transform
    from classifier_client.capture import DataCapture
    from classifier_client.config import AwsContext, ConfigurationError, aws_context
    from classifier_client.debugger import DebuggerSettings
    from classifier_client.deployments import TrafficShift, UpdateSettings, update
    from classifier_client.deployments import set_weights as weights
    from classifier_client.endpoints import DeploySettings, delete, deploy, invoke
    from classifier_client.hosting import HostingOptions
    from classifier_client.ranges import Range
    from classifier_client.review import review_captured as captured
    from classifier_client.strategies import strategy_named
    from classifier_client.training import Hyperparameters, TrainingSettings
    from classifier_client.training import start_training_job as train
    from classifier_client.tuning import SearchSettings, TuningSettings
    from classifier_client.tuning import best_training_job as best
    from classifier_client.tuning import start_tuning_job as tune
    from classifier_client.variants import Shadow, Variant
    from classifier_client.watching import WatchSettings
