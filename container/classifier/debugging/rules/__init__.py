"""Debugger rules (loss_not_decreasing, vanishing_gradient, exploding_tensor, overfit,
overtraining, poor_weight_initialization, class_imbalance) as smdebug Rules.

One implementation runs in three places: at the end of every training job that saved
tensors, as ``python -m classifier.debugging.rules TENSORS_PATH``, and as SageMaker custom rules
(``custom_rule_source_path()`` is the source file). Importing this package is cheap: smdebug
is imported when rules run.
"""

from classifier.debugger_contract import RULE_NAMES, custom_rule_source_path
from classifier.debugging.rules.runner import (
    ERROR,
    ISSUES_FOUND,
    NO_DATA,
    NO_ISSUES_FOUND,
    RuleResult,
    run_rules,
)

__all__ = [
    "ERROR",
    "ISSUES_FOUND",
    "NO_DATA",
    "NO_ISSUES_FOUND",
    "RULE_NAMES",
    "RuleResult",
    "custom_rule_source_path",
    "run_rules",
]
