"""What sees each training step: one small interface, and the job's observers behind it.

``steps.train_one_epoch`` and ``steps.evaluate`` call one :class:`StepObserver`. The job hands
them a :class:`StepObservers` of the Debugger hook, the profiler and the watchers, each adapted
here, so a new observer is one class and no new parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from classifier.debugging import hook as debugger


@dataclass(frozen=True)
class StepRecord:
    """One training step, after the optimizer's step."""

    loss: float
    samples: int
    data_seconds: float
    compute_seconds: float


class StepObserver:
    """Sees the passes and steps of training; a subclass overrides what it needs."""

    def begin_pass(self, train: bool) -> None:
        """A training epoch (``train``) or an evaluation pass starts."""

    def after_forward(self, targets, logits, last_of_epoch: bool) -> None:
        """A training step's model forward is done and its loss forward is next."""

    def after_step(self, step: StepRecord) -> None:
        """A training step is done."""


class StepObservers(StepObserver):
    """Several observers as one, called in order."""

    def __init__(self, observers: Iterable[StepObserver] = ()):
        self.observers = tuple(observers)

    def begin_pass(self, train: bool) -> None:
        for observer in self.observers:
            observer.begin_pass(train)

    def after_forward(self, targets, logits, last_of_epoch: bool) -> None:
        for observer in self.observers:
            observer.after_forward(targets, logits, last_of_epoch)

    def after_step(self, step: StepRecord) -> None:
        for observer in self.observers:
            observer.after_step(step)


class DebuggerSteps(StepObserver):
    """The smdebug hook: its mode per pass, and the labels and predictions the rules read."""

    def __init__(self, hook):
        self.hook = hook

    def begin_pass(self, train: bool) -> None:
        debugger.set_mode(self.hook, train=train)

    def after_forward(self, targets, logits, last_of_epoch: bool) -> None:
        # Between the two forwards: smdebug then writes them into the current step.
        debugger.record_batch(self.hook, targets, logits, last_of_epoch=last_of_epoch)


class ProfilerSteps(StepObserver):
    """The job's profiler: data wait and compute time of every step."""

    def __init__(self, profiler):
        self.profiler = profiler

    def after_step(self, step: StepRecord) -> None:
        self.profiler.record_step(step.data_seconds, step.compute_seconds, step.samples)


class WatcherSteps(StepObserver):
    """TensorBoard and MLflow (``classifier.watching.base.Watchers``): each step's loss."""

    def __init__(self, watchers):
        self.watchers = watchers

    def after_step(self, step: StepRecord) -> None:
        self.watchers.record_step(step.loss)
