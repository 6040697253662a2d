"""What the Debugger hook saves and which rules read it, shared by the training job and the
client without importing smdebug: the hook's collections (the same mapping configures the local
hook and the CreateTrainingJob request's DebugHookConfig), the rule names, and the source file
SageMaker runs the rules from.
"""

from __future__ import annotations

import importlib.util
import os

# The rule names, without importing smdebug; keep in step with
# classifier.debugging.rules.debugger_rules.RULES (a unit test does).
RULE_NAMES = (
    "loss_not_decreasing",
    "vanishing_gradient",
    "exploding_tensor",
    "overfit",
    "overtraining",
    "poor_weight_initialization",
    "class_imbalance",
)

LABELS_COLLECTION = "labels"
PREDICTIONS_COLLECTION = "predictions"
RELU_INPUT_COLLECTION = "relu_input"

# Scalars and per-sample integers: the loss rules need every step, class_imbalance every
# sample (labels and predictions arrive in batches of BATCHES_PER_SAVE steps, see record_batch).
EVERY_STEP_COLLECTIONS = ("losses", LABELS_COLLECTION, PREDICTIONS_COLLECTION)
# Whole tensors are never saved raw, only the reductions a rule reads (each one is an event
# written by smdebug's pure-Python protobuf, the main cost of a saved step). They are saved in
# the first INITIAL_STEPS train steps (poor_weight_initialization judges the start) and then
# every TENSOR_SAVE_INTERVAL train steps (SageMaker's default save interval); evaluation
# passes do not change weights, so they save none of them.
#   weights:    std + shape   constant kernels (poor_weight_initialization), NaN (exploding_tensor)
#   biases:     mean          NaN/inf (exploding_tensor)
#   gradients:  std, mean of |g|    spread (poor_weight_initialization), vanishing_gradient
#   relu_input: std           activation variance (poor_weight_initialization), NaN
REDUCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "weights": (("std",), (), True),
    "biases": (("mean",), (), False),
    "gradients": (("std",), ("mean",), False),
    RELU_INPUT_COLLECTION: (("std",), (), False),
}
REDUCED_COLLECTIONS = tuple(REDUCTIONS)
TENSOR_SAVE_INTERVAL = 500
INITIAL_STEPS = (0,)


def hook_collections(
    tensor_save_interval: int = TENSOR_SAVE_INTERVAL, initial_steps=INITIAL_STEPS
) -> dict[str, dict[str, str]]:
    """Collection name -> smdebug CollectionParameters (strings, as SageMaker wants them).

    The same mapping configures the local hook (``configure_hook``) and, on the client,
    the DebuggerHookConfig CollectionConfigurations, so both save what the rules read.
    """
    collections: dict[str, dict[str, str]] = {name: {"save_interval": "1"} for name in EVERY_STEP_COLLECTIONS}
    for name, (reductions, abs_reductions, save_shape) in REDUCTIONS.items():
        collections[name] = {
            "train.save_interval": str(tensor_save_interval),
            "train.save_steps": ",".join(str(step) for step in initial_steps),
            "eval.end_step": "0",
            "reductions": ",".join(reductions),
            "save_shape": str(save_shape).lower(),
        }
        if abs_reductions:
            collections[name]["abs_reductions"] = ",".join(abs_reductions)
    collections[LABELS_COLLECTION]["include_regex"] = f"^{LABELS_COLLECTION}$"
    collections[PREDICTIONS_COLLECTION]["include_regex"] = f"^{PREDICTIONS_COLLECTION}$"
    return collections


def request_collection_configurations(**kwargs) -> list[dict]:
    """``hook_collections`` as the CreateTrainingJob request's DebugHookConfig
    CollectionConfigurations: ``[{"CollectionName", "CollectionParameters"}]``."""
    return [
        {"CollectionName": name, "CollectionParameters": dict(parameters)}
        for name, parameters in hook_collections(**kwargs).items()
    ]


def custom_rule_source_path() -> str:
    """The file to pass as ``source`` to SageMaker custom rules (self-contained rule classes),
    found without importing it (it imports smdebug, which the client's environment lacks)."""
    spec = importlib.util.find_spec("classifier.debugging.rules.debugger_rules")
    if spec is None or spec.origin is None:  # pragma: no cover - a broken install
        raise RuntimeError("classifier.debugging.rules.debugger_rules is not installed")
    return os.path.abspath(spec.origin)
