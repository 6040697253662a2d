"""Open implementations of SageMaker Debugger's built-in training rules, as smdebug Rules.

AWS's built-in rule code is closed and its managed rules are not open to new customers,
so these classes re-implement the documented behaviour with the documented parameter
names and defaults. This file is deliberately self-contained (only smdebug, numpy and
the standard library): it is the ``source`` uploaded for SageMaker custom rules, where
it runs without the rest of the ``classifier`` package. That is why its parameter parsing,
tensor access and rules stay in one file of over 500 lines: AWS's rule evaluator loads one
source file (``source_s3_uri``), and a split would need a build step to join it again.

Every parameter also accepts a string, because SageMaker passes RuleParameters as
strings. Each rule remembers the first step where it fired, how often, and why
(``first_fired_step``, ``violations``, ``message``, ``evidence``) so a report can say more
than "IssuesFound".

Where AWS documents per-step comparisons of mini-batch losses, the loss based rules
compare means over windows or evaluation passes instead: single batch losses are too
noisy to compare at the documented thresholds (see each class).
"""

from __future__ import annotations

import math
import re

import numpy as np
from smdebug.core.modes import ModeKeys
from smdebug.exceptions import ShapeUnavailableForStep, TensorUnavailableForStep
from smdebug.rules.rule import Rule

# --- parameter parsing (SageMaker passes every RuleParameter as a string) -------------


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _as_list(value) -> list[str]:
    """None, a list, or a comma-separated string, as AWS's rules accept."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part) for part in value]


def _as_float(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"parameter {name} must be a number, got {value!r}") from error


def _as_int(value, name: str) -> int:
    number = _as_float(value, name)
    if not number.is_integer():
        raise ValueError(f"parameter {name} must be an integer, got {value!r}")
    return int(number)


def _as_mode(value) -> ModeKeys | None:
    if value is None or isinstance(value, ModeKeys):
        return value
    text = str(value).strip().upper()
    if text in ("", "NONE"):
        return None
    if text not in ModeKeys.__members__:
        raise ValueError(f"mode must be one of {list(ModeKeys.__members__)}, got {value!r}")
    return ModeKeys[text]


# --- tensor statistics from raw values or from saved reductions ----------------------


def _scalar(trial, name: str, step: int) -> float | None:
    """A scalar tensor's value at a global step, or None when it was not saved then."""
    try:
        value = trial.tensor(name).value(step)
    except TensorUnavailableForStep:
        return None
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _stats(trial, name: str, step: int) -> dict | None:
    """mean/std/min/max/abs_mean (+ size and 5-95 percentile range when raw) of a tensor.

    Hooks configured by ``classifier.debugging.hook`` save reductions instead of raw tensors to
    keep the overhead low; SageMaker's hook config may save raw tensors. Both work.
    """
    tensor = trial.tensor(name)
    try:
        raw = np.asarray(tensor.value(step), dtype=np.float64)
    except TensorUnavailableForStep as error:
        return _reduction_stats(tensor, step) if error.has_reductions else None
    return _raw_stats(raw)


def _raw_stats(raw: np.ndarray) -> dict:
    flat = raw.reshape(-1)
    finite = bool(np.isfinite(flat).all())
    stats: dict = {
        "size": int(flat.size),
        "ndim": int(raw.ndim),
        "mean": float(flat.mean()) if flat.size else 0.0,
        "std": float(flat.std()) if flat.size else 0.0,
        "min": float(flat.min()) if flat.size else 0.0,
        "max": float(flat.max()) if flat.size else 0.0,
        "abs_mean": float(np.abs(flat).mean()) if flat.size else 0.0,
        "finite": finite,
    }
    if flat.size and finite:
        low, high = np.percentile(flat, [5, 95])
        stats["p5_p95_range"] = float(high - low)
    return stats


def _reduction_stats(tensor, step: int) -> dict:
    """The same statistics from the reductions a hook saved; None where one was not saved."""

    def reduction(name: str, abs_: bool = False) -> float | None:
        try:
            return float(tensor.reduction_value(step, name, abs=abs_))
        except (TensorUnavailableForStep, KeyError, ValueError):
            return None

    try:
        shape = tensor.shape(step)  # saved when the reduction config has save_shape=True
    except ShapeUnavailableForStep:
        shape = None
    stats: dict = {
        "size": int(np.prod(shape)) if shape is not None else None,
        "ndim": len(shape) if shape is not None else None,
        "mean": reduction("mean"),
        "std": reduction("std"),
        "min": reduction("min"),
        "max": reduction("max"),
        "abs_mean": reduction("mean", abs_=True),
    }
    known = [v for k, v in stats.items() if k in ("mean", "std", "min", "max") and v is not None]
    stats["finite"] = all(math.isfinite(v) for v in known)
    return stats


def _tensor_names(trial, collections: list[str], regexes: list[str], step: int | None = None) -> list[str]:
    """Tensors in ``collections`` or matching ``regexes``; with ``step``, only those saved then.

    Most tensors are saved at a few steps only, so filtering by step first keeps a rule
    from asking for every tensor's value at every step of the job.
    """
    names: set[str] = set()
    for collection in collections:
        if collection in trial.collections():
            names.update(trial.tensor_names(collection=collection))
    if regexes:
        names.update(trial.tensor_names(regex=regexes))
    if step is not None:
        names.intersection_update(trial.tensor_names(step=step))
    return sorted(names)


# --- the base class ---------------------------------------------------------------------


class ReportingRule(Rule):
    """A Rule that keeps the first step it fired at, a violation count and its evidence."""

    #: the snake_case name SageMaker's rule_configs use for the built-in equivalent
    rule_key = ""

    def __init__(self, base_trial, action_str: str = "", other_trials=None, **parameters):
        super().__init__(base_trial, action_str=action_str or "", other_trials=other_trials)
        self.parameters = parameters
        self.report["RuleParameters"] = ", ".join(f"{k}={v}" for k, v in parameters.items())
        self.first_fired_step: int | None = None
        self.violations = 0
        self.datapoints = 0
        self.message = ""
        self.evidence: dict = {}

    def _fire(self, step: int, message: str, **evidence) -> bool:
        self.violations += 1
        self.report["Violations"] = self.violations
        self.report["RuleTriggered"] = 1
        if self.first_fired_step is None:
            self.first_fired_step = int(step)
            self.message = message
            self.evidence = {key: _jsonable(value) for key, value in evidence.items()}
            self.report["Details"] = {"step": int(step), "message": message, **self.evidence}
            self.logger.info("%s fired at step %d: %s", self.rule_name, step, message)
        return True

    def _seen(self) -> None:
        self.datapoints += 1
        self.report["Datapoints"] = self.datapoints

    def _mode_of(self, step: int) -> ModeKeys | None:
        return self.base_trial.mode(step)


def _parameters(local_vars: dict) -> dict:
    """A constructor's own parameters (from ``locals()``), for the report."""
    skip = ("self", "base_trial", "action_str", "other_trials", "__class__")
    return {k: v for k, v in local_vars.items() if k not in skip}


def _jsonable(value):
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --- loss rules ---------------------------------------------------------------------


class _LossRule(ReportingRule):
    """Shared loss tensor selection (the ``losses`` collection and/or ``tensor_regex``) and
    evaluation-pass boundaries.

    An evaluation pass ends at an EVAL step whose next saved step is not EVAL, or at the
    last step of a finished job.
    """

    _next_mode: dict[int, ModeKeys | None] | None = None

    def _pass_complete(self, step: int) -> bool:
        if self._next_mode is None or not self.base_trial.loaded_all_steps:
            steps = self.base_trial.steps()
            modes = [self.base_trial.mode(s) for s in steps]
            # One pass over the steps; a finished job's step list no longer changes.
            self._next_mode = dict(zip(steps, [*modes[1:], None], strict=True))
        if step in self._next_mode and self._next_mode[step] is not None:
            return self._next_mode[step] != ModeKeys.EVAL
        return bool(self.base_trial.loaded_all_steps)

    def _loss_names(self, collection_names, tensor_regex, use_losses_collection=True):
        collections = _as_list(collection_names)
        if use_losses_collection:
            collections.append("losses")
        return _tensor_names(self.base_trial, collections, _as_list(tensor_regex))


#: consecutive window-over-window rises above increase_threshold_percent that fire
#: LossNotDecreasing: one rise is often a single hard batch or pass, two are a trend.
RISES_TO_FIRE = 2


class LossNotDecreasing(_LossRule):
    """The loss stops decreasing (plateau) or grows, or becomes NaN/inf.

    AWS parameters: collection_names, tensor_regex, use_losses_collection=True,
    num_steps=10, diff_percent=0.1, increase_threshold_percent=5, mode (default: EVAL if it
    has losses, else TRAIN, else GLOBAL). Every ``num_steps`` saved steps of that mode, the
    mean loss of those steps is compared with the mean of the ``num_steps`` before: the
    rule fires when it decreased by less than ``diff_percent`` percent, or when it rose by
    more than ``increase_threshold_percent`` percent in RISES_TO_FIRE comparisons in a row.
    In EVAL mode the unit is a whole evaluation pass instead of ``num_steps`` steps: each
    pass's mean loss is compared with the pass before. (Both differ from AWS's single-step
    comparison, which fires on mini-batch noise and on the batch order of validation data.)
    """

    rule_key = "loss_not_decreasing"

    def __init__(
        self,
        base_trial,
        collection_names=None,
        tensor_regex=None,
        use_losses_collection=True,
        num_steps=10,
        diff_percent=0.1,
        increase_threshold_percent=5,
        mode=None,
        action_str="",
        other_trials=None,
    ):
        super().__init__(base_trial, action_str, other_trials, **_parameters(locals()))
        self.collection_names = collection_names
        self.tensor_regex = tensor_regex
        self.use_losses_collection = _as_bool(use_losses_collection)
        self.num_steps = _as_int(num_steps, "num_steps")
        self.diff_percent = _as_float(diff_percent, "diff_percent")
        self.increase_threshold_percent = _as_float(increase_threshold_percent, "increase_threshold_percent")
        self.mode = _as_mode(mode)
        if self.num_steps < 1:
            raise ValueError("num_steps must be >= 1")
        self._values: dict[str, list[tuple[int, float]]] = {}
        self._checked_at: dict[str, int] = {}
        self._rises: dict[str, int] = {}
        self._pass_values: dict[str, list[float]] = {}

    def _resolved_mode(self) -> ModeKeys:
        if self.mode is None:
            for candidate in (ModeKeys.EVAL, ModeKeys.TRAIN, ModeKeys.GLOBAL):
                if self.base_trial.steps(mode=candidate):
                    self.mode = candidate
                    break
            else:
                self.mode = ModeKeys.GLOBAL
        return self.mode

    def invoke_at_step(self, step):
        mode = self._resolved_mode()
        if mode != ModeKeys.GLOBAL and self._mode_of(step) != mode:
            return False
        fired = False
        for name in self._loss_names(self.collection_names, self.tensor_regex, self.use_losses_collection):
            value = _scalar(self.base_trial, name, step)
            if value is None:
                continue
            self._seen()
            if not math.isfinite(value):
                fired = self._fire(step, f"{name} is {value} at step {step}", tensor=name, value=value)
                continue
            if mode != ModeKeys.EVAL:
                fired = self._judge(name, step, value, self.num_steps, mode) or fired
                continue
            # Unshuffled validation batches differ from each other (an ImageFolder is sorted
            # by class), so in EVAL mode one datapoint is the mean of a whole pass.
            self._pass_values.setdefault(name, []).append(value)
            if self._pass_complete(step):
                pass_mean = float(np.mean(self._pass_values.pop(name)))
                fired = self._judge(name, step, pass_mean, 1, mode) or fired
        return fired

    def _judge(self, name: str, step: int, value: float, window: int, mode: ModeKeys) -> bool:
        values = self._values.setdefault(name, [])
        values.append((step, value))
        since = len(values) - self._checked_at.get(name, 0)
        if len(values) < 2 * window or since < window:
            return False
        self._checked_at[name] = len(values)
        current = float(np.mean([v for _, v in values[-window:]]))
        previous = float(np.mean([v for _, v in values[-2 * window : -window]]))
        change_percent = (previous - current) / max(abs(previous), 1e-12) * 100.0
        rising = -change_percent > self.increase_threshold_percent
        self._rises[name] = self._rises.get(name, 0) + 1 if rising else 0
        unit = "evaluation pass(es)" if mode == ModeKeys.EVAL else "saved steps"
        evidence = {
            "tensor": name,
            "mode": mode.name,
            "previous_mean": previous,
            "current_mean": current,
            "decrease_percent": change_percent,
            "window_steps": [values[-2 * window][0], step],
        }
        if self._rises[name] >= RISES_TO_FIRE:
            return self._fire(
                step,
                f"{mode.name} loss rose {-change_percent:.1f}% (mean of {window} {unit}: "
                f"{previous:.4g} -> {current:.4g}), the {self._rises[name]}th rise in a row",
                **evidence,
            )
        if abs(change_percent) < self.diff_percent:
            return self._fire(
                step,
                f"{mode.name} loss changed only {change_percent:.3f}% over {window} {unit} "
                f"({previous:.4g} -> {current:.4g}); it has stopped decreasing",
                **evidence,
            )
        return False


class _EvalPassRule(_LossRule):
    """Collects mean TRAIN loss per training stretch and mean EVAL loss per evaluation pass.

    Comparing these means instead of single batches keeps mini-batch noise out of the rule.
    """

    def __init__(self, base_trial, action_str, other_trials, **parameters):
        super().__init__(base_trial, action_str, other_trials, **parameters)
        self.tensor_regex = parameters.get("tensor_regex")
        self._eval: list[float] = []
        self._last_train_mean: float | None = None
        self._train_window: list[float] = []

    def _loss_at(self, step: int) -> float | None:
        names = self._loss_names(None, self.tensor_regex, True)
        scalars = (_scalar(self.base_trial, name, step) for name in names)
        values = [v for v in scalars if v is not None]
        return float(np.mean(values)) if values else None

    def _collect(self, step: int):
        """Returns (train_mean, eval_mean) when an evaluation pass completes at ``step``."""
        mode = self._mode_of(step)
        value = self._loss_at(step)
        if value is None:
            return None
        self._seen()
        if mode == ModeKeys.TRAIN:
            if self._eval:
                self._eval = []
            self._train_window.append(value)
            return None
        if mode != ModeKeys.EVAL:
            return None
        if self._train_window:
            self._last_train_mean = float(np.mean(self._train_window))
            self._train_window = []
        self._eval.append(value)
        if not self._pass_complete(step) or self._last_train_mean is None:
            return None
        eval_mean = float(np.mean(self._eval))
        self._eval = []
        return self._last_train_mean, eval_mean


class Overfit(_EvalPassRule):
    """Validation loss pulls away from training loss while it gets worse.

    AWS parameters: tensor_regex, start_step=0, patience=1, ratio_threshold=0.1. After
    each evaluation pass from ``start_step`` on, the pass counts as overfitting when
    - (mean valid loss - mean train loss) / mean train loss is above ``ratio_threshold``
      (AWS's criterion), and
    - the mean valid loss is also more than ``ratio_threshold`` above the best (lowest)
      valid loss of the earlier passes: it is rising, not just still higher.
    ``patience`` consecutive overfitting passes fire the rule.

    The second condition is ours. Without it the rule fires on the first evaluation of
    nearly every model trained from scratch, where the valid loss is always well above the
    training loss although both are falling.
    """

    rule_key = "overfit"

    def __init__(
        self,
        base_trial,
        tensor_regex=None,
        start_step=0,
        patience=1,
        ratio_threshold=0.1,
        action_str="",
        other_trials=None,
    ):
        super().__init__(base_trial, action_str, other_trials, **_parameters(locals()))
        self.start_step = _as_int(start_step, "start_step")
        self.patience = _as_int(patience, "patience")
        self.ratio_threshold = _as_float(ratio_threshold, "ratio_threshold")
        self._exceeded = 0
        self._best_valid = math.inf

    def invoke_at_step(self, step):
        if step < self.start_step:
            return False
        means = self._collect(step)
        if means is None:
            return False
        train_mean, eval_mean = means
        ratio = (eval_mean - train_mean) / max(abs(train_mean), 1e-12)
        rise = (eval_mean - self._best_valid) / max(abs(self._best_valid), 1e-12)
        self._best_valid = min(self._best_valid, eval_mean)
        if ratio <= self.ratio_threshold or not rise > self.ratio_threshold:
            self._exceeded = 0
            return False
        self._exceeded += 1
        if self._exceeded < self.patience:
            return False
        return self._fire(
            step,
            f"validation loss {eval_mean:.4g} is {ratio:.0%} above training loss {train_mean:.4g} "
            f"and {rise:.0%} above its best {self._best_valid:.4g} (threshold "
            f"{self.ratio_threshold:.0%}) for {self._exceeded} evaluation pass(es)",
            train_loss=train_mean,
            valid_loss=eval_mean,
            ratio=ratio,
            rise_from_best=rise,
        )


class Overtraining(_EvalPassRule):
    """Training or validation loss has stopped improving: more epochs only cost money.

    AWS parameters: patience_train=5, patience_validation=10, delta=0.01. A new optimum
    is a mean loss at least ``delta`` below the best so far; the rule fires when the
    training loss (mean per training stretch between evaluations) had no new optimum for
    ``patience_train`` stretches, or the validation loss (mean per evaluation pass) for
    ``patience_validation`` passes.
    """

    rule_key = "overtraining"

    def __init__(
        self,
        base_trial,
        patience_train=5,
        patience_validation=10,
        delta=0.01,
        action_str="",
        other_trials=None,
    ):
        super().__init__(base_trial, action_str, other_trials, **_parameters(locals()))
        self.patience_train = _as_int(patience_train, "patience_train")
        self.patience_validation = _as_int(patience_validation, "patience_validation")
        self.delta = _as_float(delta, "delta")
        self._best = {"train": math.inf, "valid": math.inf}
        self._since = {"train": 0, "valid": 0}

    def _update(self, which: str, value: float) -> None:
        if value < self._best[which] - self.delta:
            self._best[which] = value
            self._since[which] = 0
        else:
            self._since[which] += 1

    def invoke_at_step(self, step):
        means = self._collect(step)
        if means is None:
            return False
        train_mean, eval_mean = means
        self._update("train", train_mean)
        self._update("valid", eval_mean)
        if self._since["valid"] >= self.patience_validation:
            return self._fire(
                step,
                f"validation loss has not improved by {self.delta} for {self._since['valid']} "
                f"evaluation passes (best {self._best['valid']:.4g})",
                best_valid_loss=self._best["valid"],
                passes_without_improvement=self._since["valid"],
            )
        if self._since["train"] >= self.patience_train:
            return self._fire(
                step,
                f"training loss has not improved by {self.delta} for {self._since['train']} "
                f"epochs (best {self._best['train']:.4g})",
                best_train_loss=self._best["train"],
                epochs_without_improvement=self._since["train"],
            )
        return False


# --- tensor rules ---------------------------------------------------------------------


class VanishingGradient(ReportingRule):
    """The mean absolute gradient of a weight tensor drops below ``threshold`` (AWS: 1e-7).

    Bias gradients are skipped: a bias followed by batch norm has an exactly-zero
    gradient in a perfectly healthy network.
    """

    rule_key = "vanishing_gradient"

    def __init__(self, base_trial, threshold=0.0000001, action_str="", other_trials=None):
        super().__init__(base_trial, action_str, other_trials, threshold=threshold)
        self.threshold = _as_float(threshold, "threshold")

    def invoke_at_step(self, step):
        names = [
            n
            for n in _tensor_names(self.base_trial, ["gradients"], ["^gradient/"], step)
            if not n.endswith("bias")
        ]
        vanished = {}
        for name in names:
            stats = _stats(self.base_trial, name, step)
            if stats is None or stats["abs_mean"] is None:
                continue
            self._seen()
            if stats["abs_mean"] < self.threshold:
                vanished[name] = stats["abs_mean"]
        if not vanished:
            return False
        worst = min(vanished, key=vanished.__getitem__)
        return self._fire(
            step,
            f"{len(vanished)} gradient tensor(s) have mean |gradient| below {self.threshold:g}, "
            f"e.g. {worst} = {vanished[worst]:.3g}",
            tensors=dict(sorted(vanished.items(), key=lambda kv: kv[1])[:10]),
        )


class ExplodingTensor(ReportingRule):
    """A tensor holds NaN (or, unless ``only_nan``, infinite) values.

    AWS parameters: collection_names, tensor_regex, only_nan=False. With neither given,
    every saved tensor is checked. Tensors saved as reductions are judged by whichever of
    their mean/std/min/max reductions were saved: NaN and inf propagate into each of them.
    """

    rule_key = "exploding_tensor"

    def __init__(
        self,
        base_trial,
        collection_names=None,
        tensor_regex=None,
        only_nan=False,
        action_str="",
        other_trials=None,
    ):
        super().__init__(base_trial, action_str, other_trials, **_parameters(locals()))
        self.collections = _as_list(collection_names)
        self.regexes = _as_list(tensor_regex)
        self.only_nan = _as_bool(only_nan)

    def invoke_at_step(self, step):
        if self.collections or self.regexes:
            names = _tensor_names(self.base_trial, self.collections, self.regexes, step)
        else:
            names = self.base_trial.tensor_names(step=step)
        bad = {}
        for name in names:
            stats = _stats(self.base_trial, name, step)
            if stats is None:
                continue
            self._seen()
            values = [stats[k] for k in ("mean", "std", "min", "max") if stats.get(k) is not None]
            has_nan = any(math.isnan(v) for v in values)
            has_inf = any(math.isinf(v) for v in values)
            if has_nan or (has_inf and not self.only_nan):
                bad[name] = "nan" if has_nan else "inf"
        if not bad:
            return False
        first = sorted(bad)[0]
        return self._fire(
            step,
            f"{len(bad)} tensor(s) hold non-finite values at step {step}, e.g. {first} ({bad[first]})",
            tensors=dict(sorted(bad.items())[:20]),
        )


STUCK_LOSS_PERCENT = 1.0


class PoorWeightInitialization(ReportingRule):
    """The network starts badly: dead or mismatched activations, flat gradients, no learning.

    AWS parameters: activation_inputs_regex=".*relu_input", threshold=10.0,
    distribution_range=0.001, patience=5, steps=10. Within the first ``steps`` TRAIN
    steps it fires when
    - the ratio of the largest to the smallest variance of the activation inputs (tensors
      matching the regex, or in the ``relu_input`` collection) exceeds ``threshold``, or
      one of them is zero (dead layer);
    - the 5th-95th percentile range of all gradients is below ``distribution_range``
      (estimated as 3.29 standard deviations when only reductions were saved);
    - a weight matrix/kernel is constant, so its units cannot differ (symmetry not broken);
    - the loss is stuck: the mean of the last ``patience`` losses of those steps is within
      STUCK_LOSS_PERCENT percent of the mean of the first ``patience``. (AWS: no new minimum
      for ``patience`` consecutive steps. With Adam and batch norm the loss of a healthy
      network often rises over its first ten steps, so "no new minimum" is no sign of a bad
      initialisation; a loss that does not move at all is.)
    """

    rule_key = "poor_weight_initialization"

    def __init__(
        self,
        base_trial,
        activation_inputs_regex=".*relu_input",
        threshold=10.0,
        distribution_range=0.001,
        patience=5,
        steps=10,
        action_str="",
        other_trials=None,
    ):
        super().__init__(base_trial, action_str, other_trials, **_parameters(locals()))
        self.activation_regexes = _as_list(activation_inputs_regex)
        self.threshold = _as_float(threshold, "threshold")
        self.distribution_range = _as_float(distribution_range, "distribution_range")
        self.patience = _as_int(patience, "patience")
        self.steps = _as_int(steps, "steps")
        self._losses: list[float] = []

    def _check_activations(self, step):
        names = _tensor_names(self.base_trial, ["relu_input"], self.activation_regexes, step)
        variances = {}
        for name in names:
            stats = _stats(self.base_trial, name, step)
            if stats is not None and stats["std"] is not None and math.isfinite(stats["std"]):
                variances[name] = stats["std"] ** 2
        if len(variances) < 1:
            return None
        self._seen()
        low_name = min(variances, key=variances.__getitem__)
        high_name = max(variances, key=variances.__getitem__)
        low, high = variances[low_name], variances[high_name]
        if low <= 1e-12:
            return self._fire(
                step,
                f"activation input {low_name} has zero variance at step {step}: the layer is dead",
                check="activation_variance",
                tensor=low_name,
                variance=low,
            )
        if len(variances) > 1 and high / low > self.threshold:
            return self._fire(
                step,
                f"activation input variances differ {high / low:.1f}x across layers "
                f"({high_name} {high:.3g} vs {low_name} {low:.3g}; threshold {self.threshold:g})",
                check="activation_variance",
                ratio=high / low,
                max_tensor=high_name,
                min_tensor=low_name,
            )
        return None

    def _check_gradients(self, step):
        names = _tensor_names(self.base_trial, ["gradients"], ["^gradient/"], step)
        ranges, stds, means = [], [], []
        for name in names:
            stats = _stats(self.base_trial, name, step)
            if stats is None or not stats["finite"]:
                continue
            if "p5_p95_range" in stats:
                ranges.append(stats["p5_p95_range"])
            elif stats["std"] is not None:
                stds.append(stats["std"])
                # Gradient means are tiny next to their spread; the default hook saves none.
                means.append(stats["mean"] or 0.0)
        if not ranges and not stds:
            return None
        self._seen()
        if stds:
            # Pool equally weighted per-tensor moments; a normal's 5-95 range is 3.29 sigma.
            pooled = float(np.mean(np.square(stds) + np.square(means)) - np.mean(means) ** 2)
            ranges.append(3.29 * math.sqrt(max(pooled, 0.0)))
        spread = max(ranges)
        if spread < self.distribution_range:
            return self._fire(
                step,
                f"gradients hardly vary: 5th-95th percentile range {spread:.3g} < "
                f"{self.distribution_range:g} at step {step}",
                check="gradient_distribution",
                p5_p95_range=spread,
            )
        return None

    def _check_constant_weights(self, step):
        constant = []
        for name in _tensor_names(self.base_trial, ["weights"], [], step):
            stats = _stats(self.base_trial, name, step)
            if stats is None or stats["std"] is None or stats["ndim"] is None:
                continue
            if stats["ndim"] >= 2 and (stats["size"] or 0) > 1 and stats["std"] == 0.0:
                constant.append(name)
        if constant:
            return self._fire(
                step,
                f"{len(constant)} weight tensor(s) are constant (e.g. {constant[0]}): "
                "their units compute the same thing and cannot learn different features",
                check="constant_weights",
                tensors=constant[:10],
            )
        return None

    def _check_loss(self, step):
        """The loss is stuck: the means of the first and the latest ``patience`` train losses
        of the first ``steps`` differ by less than STUCK_LOSS_PERCENT percent."""
        names = _tensor_names(self.base_trial, ["losses"], [], step)
        scalars = (_scalar(self.base_trial, name, step) for name in names)
        losses = [v for v in scalars if v is not None and math.isfinite(v)]
        if not losses:
            return None
        self._losses.append(float(np.mean(losses)))
        if self.base_trial.mode_step(step) < self.steps - 1 or len(self._losses) < 2 * self.patience:
            return None
        first = float(np.mean(self._losses[: self.patience]))
        latest = float(np.mean(self._losses[-self.patience :]))
        change_percent = abs(latest - first) / max(abs(first), 1e-12) * 100.0
        if change_percent >= STUCK_LOSS_PERCENT:
            return None
        return self._fire(
            step,
            f"the loss is stuck: the mean of the last {self.patience} of the first {self.steps} "
            f"steps ({latest:.4g}) is within {STUCK_LOSS_PERCENT:g}% of the first {self.patience} "
            f"({first:.4g})",
            check="initial_loss",
            first_loss=first,
            latest_loss=latest,
        )

    def invoke_at_step(self, step):
        if self._mode_of(step) not in (ModeKeys.TRAIN, ModeKeys.GLOBAL):
            return False
        if self.base_trial.mode_step(step) >= self.steps:
            return False
        for check in (
            self._check_constant_weights,
            self._check_activations,
            self._check_gradients,
            self._check_loss,
        ):
            if check(step):
                return True
        return False


class ClassImbalance(ReportingRule):
    """The training labels are imbalanced, or a class is mostly mispredicted.

    AWS parameters: threshold_imbalance=10, threshold_misprediction=0.7, samples=500,
    argmax=True, labels_regex=".*labels", predictions_regex=".*predictions". TRAIN labels
    and predictions are accumulated; once ``samples`` labels were seen it fires when the
    largest class has more than ``threshold_imbalance`` times the samples of the smallest,
    or when the share of mispredictions of a class over the last ``samples`` labels is
    above ``threshold_misprediction`` while the model gets the others right: the overall
    share of mispredictions over those samples is below 1 - ``threshold_misprediction``.
    (That last condition is ours: early in training every class is mostly mispredicted,
    and AWS's criterion alone fires on every model trained from scratch.)
    """

    rule_key = "class_imbalance"

    def __init__(
        self,
        base_trial,
        threshold_imbalance=10,
        threshold_misprediction=0.7,
        samples=500,
        argmax=True,
        labels_regex=".*labels",
        predictions_regex=".*predictions",
        action_str="",
        other_trials=None,
    ):
        super().__init__(base_trial, action_str, other_trials, **_parameters(locals()))
        self.threshold_imbalance = _as_float(threshold_imbalance, "threshold_imbalance")
        self.threshold_misprediction = _as_float(threshold_misprediction, "threshold_misprediction")
        self.samples = _as_int(samples, "samples")
        self.argmax = _as_bool(argmax)
        self.labels_regex = _as_list(labels_regex)
        self.predictions_regex = _as_list(predictions_regex)
        self._counts: dict[int, int] = {}
        self._recent: list[tuple[int, int]] = []

    def _values(self, regexes, collection, step):
        names = [
            n
            for n in _tensor_names(self.base_trial, [collection], [])
            + self.base_trial.tensor_names(regex=[f"^(?:{r})$" for r in regexes])
        ]
        for name in sorted(set(names)):
            try:
                return np.asarray(self.base_trial.tensor(name).value(step))
            except TensorUnavailableForStep:
                continue
        return None

    def invoke_at_step(self, step):
        if self._mode_of(step) not in (ModeKeys.TRAIN, ModeKeys.GLOBAL):
            return False
        labels = self._values(self.labels_regex, "labels", step)
        if labels is None:
            return False
        self._seen()
        self._accumulate(step, _class_indices(labels, True))
        if sum(self._counts.values()) < self.samples:
            return False
        return self._check_imbalance(step) or self._check_misprediction(step)

    def _accumulate(self, step: int, labels: np.ndarray) -> None:
        """Count the step's labels; keep the last ``samples`` (label, prediction) pairs."""
        for label in labels.tolist():
            self._counts[label] = self._counts.get(label, 0) + 1
        predictions = self._values(self.predictions_regex, "predictions", step)
        if predictions is not None:
            predicted = _class_indices(predictions, self.argmax)
            self._recent.extend(zip(labels.tolist(), predicted.tolist(), strict=True))
            self._recent = self._recent[-self.samples :]

    def _check_imbalance(self, step: int) -> bool:
        largest = max(self._counts, key=self._counts.__getitem__)
        smallest = min(self._counts, key=self._counts.__getitem__)
        ratio = self._counts[largest] / self._counts[smallest]
        if ratio <= self.threshold_imbalance:
            return False
        return self._fire(
            step,
            f"class {largest} has {self._counts[largest]} training samples, class {smallest} "
            f"only {self._counts[smallest]} ({ratio:.1f}x > {self.threshold_imbalance:g}x)",
            check="imbalance",
            counts=dict(sorted(self._counts.items())),
            ratio=ratio,
        )

    def _check_misprediction(self, step: int) -> bool:
        if len(self._recent) < self.samples:
            return False
        wrong: dict[int, list[int]] = {}
        for label, prediction in self._recent:
            wrong.setdefault(label, []).append(int(label != prediction))
        rates = {label: float(np.mean(v)) for label, v in wrong.items()}
        worst = max(rates, key=rates.__getitem__)
        overall = float(np.mean([label != prediction for label, prediction in self._recent]))
        if rates[worst] <= self.threshold_misprediction or overall >= 1 - self.threshold_misprediction:
            return False
        return self._fire(
            step,
            f"class {worst} was mispredicted {rates[worst]:.0%} of the time over the last "
            f"{len(self._recent)} samples (threshold {self.threshold_misprediction:.0%})",
            check="misprediction",
            overall_misprediction=overall,
            misprediction_rates=dict(sorted(rates.items())),
        )


def _class_indices(values: np.ndarray, argmax: bool) -> np.ndarray:
    """Class indices from labels or predictions saved as indices, one-hot rows or scores."""
    rows = values.reshape(len(values), -1)
    indices = rows.argmax(axis=1) if argmax and rows.shape[1] > 1 else rows[:, 0]
    return indices.astype(np.int64)


#: snake_case name (as in SageMaker's rule_configs) -> class
RULES: dict[str, type[ReportingRule]] = {
    cls.rule_key: cls
    for cls in (
        LossNotDecreasing,
        VanishingGradient,
        ExplodingTensor,
        Overfit,
        Overtraining,
        PoorWeightInitialization,
        ClassImbalance,
    )
}

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def rule_class(name: str) -> type[ReportingRule]:
    """Look a rule up by snake_case key or class name (``overfit`` or ``Overfit``)."""
    key = name if name in RULES else _SNAKE.sub("_", name).lower()
    if key not in RULES:
        raise KeyError(f"unknown rule {name!r}; known: {', '.join(RULES)}")
    return RULES[key]
