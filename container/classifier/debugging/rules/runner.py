"""Run the debugger rules over a finished job's tensors (local folder or S3 prefix)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ISSUES_FOUND = "IssuesFound"
NO_ISSUES_FOUND = "NoIssuesFound"
NO_DATA = "NoData"  # the rule never found the tensors it needs
ERROR = "Error"
NOT_RUN = "NotRun"  # the job was asked to stop (SIGTERM) before this rule ran


@dataclass
class RuleResult:
    """What one rule concluded; ``str()`` is the one summary line the job log shows."""

    rule: str
    class_name: str
    status: str
    fired_at_step: int | None = None
    violations: int = 0
    datapoints: int = 0
    message: str = ""
    evidence: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)

    @property
    def fired(self) -> bool:
        return self.status == ISSUES_FOUND

    def to_dict(self) -> dict:
        return {**asdict(self), "fired": self.fired}

    def __str__(self) -> str:
        line = f"{self.rule}: {self.status}"
        if self.fired:
            line += f" at step {self.fired_at_step} ({self.violations} violation(s)): {self.message}"
        elif self.status == ERROR:
            line += f": {self.message}"
        elif self.status == NO_DATA:
            line += " (none of the tensors it needs were saved)"
        else:
            line += f" ({self.datapoints} datapoints checked)"
        return line


def _check_local_tensors(path: str) -> None:
    """smdebug waits forever for collection files that never come; fail fast instead."""
    folder = Path(path)
    collections = folder / "collections"
    if not folder.is_dir():
        raise FileNotFoundError(f"tensors folder {path} does not exist")
    if not collections.is_dir() or not any(collections.rglob("*collections.json")):
        raise FileNotFoundError(
            f"{path} holds no smdebug collections (expected {collections}/.../*collections.json); "
            "is it the hook's out_dir, and did the job call hook.close()?"
        )


def _split_params(rules: list[str], params: dict) -> dict[str, dict]:
    """``overfit={"patience": 2}`` applies to one rule; a plain ``key=value`` to every rule
    whose constructor takes ``key``."""
    import inspect

    from classifier.debugging.rules.debugger_rules import rule_class

    per_rule: dict[str, dict] = {name: {} for name in rules}
    for key, value in params.items():
        if key in per_rule and isinstance(value, dict):
            per_rule[key].update(value)
            continue
        takers = [name for name in rules if key in inspect.signature(rule_class(name).__init__).parameters]
        if not takers:
            raise TypeError(f"no selected rule takes a parameter {key!r}")
        for name in takers:
            per_rule[name].setdefault(key, value)
    return per_rule


def run_rules(
    tensors_path: str,
    rules: list[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **params,
) -> list[RuleResult]:
    """Evaluate ``rules`` (default: all) over every saved step with smdebug's invoke_rule.

    ``tensors_path`` is a local folder or an ``s3://`` prefix (the hook's out_dir). The
    job must be over: the step range is what the trial holds now, so nothing waits for
    steps that will never come. ``should_stop()`` is asked before each rule; once it says
    yes, the remaining rules are reported as NotRun.
    """
    from smdebug.trials import create_trial

    from classifier.debugging.rules.debugger_rules import RULES, rule_class

    names = [rule_class(name).rule_key for name in (rules or list(RULES))]
    per_rule = _split_params(names, params)
    if not tensors_path.startswith("s3://"):
        _check_local_tensors(tensors_path)
    trial = create_trial(tensors_path)
    # The job is over (the hook was closed), so smdebug's extra wait for late steps after
    # the training-end marker (a 1 s sleep by default) only delays the verdicts. Private:
    # smdebug 1.0.34 reads it from the environment only when the trial is made;
    # tests/unit/debugger/test_rules_api.py pins the attribute its refresh loop sleeps on.
    trial._training_end_delay_refresh = 0
    steps = trial.steps()
    end_step = steps[-1] + 1 if steps else 0
    results = []
    for name in names:
        if should_stop is not None and should_stop():
            logger.warning("stop requested: rule %s and the ones after it were not run", name)
            results.append(
                RuleResult(name, rule_class(name).__name__, NOT_RUN, message="the job was stopped first")
            )
            continue
        results.append(_run_rule(trial, name, per_rule[name], end_step))
    return results


def _run_rule(trial, name: str, params: dict, end_step: int) -> RuleResult:
    """One rule's verdict over steps [0, ``end_step``): a rule that cannot run is an Error."""
    from smdebug.exceptions import NoMoreData, SMDebugError
    from smdebug.rules.rule_invoker import invoke_rule

    from classifier.debugging.rules.debugger_rules import rule_class

    cls = rule_class(name)
    try:
        rule = cls(trial, **params)
    except (TypeError, ValueError) as error:
        return RuleResult(name, cls.__name__, ERROR, message=f"bad parameters: {error}")
    try:
        invoke_rule(rule, start_step=0, end_step=end_step, raise_eval_cond=False)
    except NoMoreData:
        logger.debug("rule %s reached the end of the data", name)
    except (SMDebugError, ValueError, KeyError, OSError) as error:
        logger.exception("rule %s failed", name)
        return RuleResult(name, cls.__name__, ERROR, message=f"{type(error).__name__}: {error}")
    if rule.first_fired_step is not None:
        status = ISSUES_FOUND
    else:
        status = NO_ISSUES_FOUND if rule.datapoints else NO_DATA
    return RuleResult(
        rule=name,
        class_name=cls.__name__,
        status=status,
        fired_at_step=rule.first_fired_step,
        violations=rule.violations,
        datapoints=rule.datapoints,
        message=rule.message,
        evidence=rule.evidence,
        parameters={k: str(v) for k, v in rule.parameters.items() if v is not None},
    )
