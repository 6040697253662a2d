"""One epoch of training, one evaluation pass: explicit arguments in, metrics out.

The job (``program``) decides what to do with the metrics; these functions only compute them,
keep the ranks in step, and notice SIGTERM between batches.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from classifier import image_folders
from classifier.models import logits_of
from classifier.training import data, distributed
from classifier.training.observers import StepObserver, StepObservers, StepRecord
from classifier.training.precision import Precision

NO_OBSERVER: StepObserver = StepObservers()


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; continuing would only waste the instance."""


class StopRequested(Exception):
    """Raised where a phase notices SIGTERM; the job saves what it has and exits."""


class StopSignal:
    """Set by SIGTERM; the loop polls it between steps so the handler itself does nothing risky."""

    def __init__(self) -> None:
        self.received = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = True


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    samples: int
    skipped: list[image_folders.SkippedFile] = field(default_factory=list)
    interrupted: bool = False


def _diverged(loss: float | None, samples: int) -> TrainingDiverged:
    where = f"became {loss}" if loss is not None else "became NaN or infinite on another rank"
    return TrainingDiverged(
        f"training loss {where} after {samples} samples; lower learning_rate "
        "(or enable gradient-friendly settings such as amp=false)"
    )


@dataclass(frozen=True)
class StepSettings:
    """How one training step computes: its precision and layout, and gradient clipping."""

    precision: Precision
    clip_grad_norm: float = 0.0


def _optimizer_step(model, loss, optimizer, scaler, settings: StepSettings) -> None:
    """Backward and step; fp16 losses are scaled, and gradients are unscaled before clipping
    so the norm is that of the true (fp32) gradients."""
    scaler.scale(loss).backward()
    if settings.clip_grad_norm:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()


def train_one_epoch(
    model,
    loader,
    loss_fn,
    optimizer,
    scaler,
    ctx,
    settings: StepSettings,
    stop: StopSignal,
    observer: StepObserver = NO_OBSERVER,
) -> EpochResult:
    """One pass over ``loader``; ``observer`` sees the pass and each of its steps."""
    model.train()
    observer.begin_pass(train=True)
    loss_sum, correct, samples = 0.0, 0, 0
    skipped: list[image_folders.SkippedFile] = []
    diverged: float | None = None
    waited_since = time.perf_counter()
    for index, batch in enumerate(loader):
        data_seconds = time.perf_counter() - waited_since
        # One all-reduce per step keeps the ranks in step: all stop, all skip a batch that is
        # empty on any rank (every image unreadable), all fail when any rank's loss diverged.
        stop_now, empty, diverged_somewhere = distributed.any_rank_each(
            ctx, [stop.received, not len(batch), diverged is not None]
        )
        if diverged_somewhere:
            raise _diverged(diverged, samples)
        if stop_now:
            return EpochResult(math.nan, math.nan, samples, skipped, interrupted=True)
        skipped.extend(batch.skipped)
        if empty:
            waited_since = time.perf_counter()
            continue
        started = time.perf_counter()
        precision = settings.precision
        images = batch.images.to(ctx.device, non_blocking=True, memory_format=precision.memory_format())
        targets = batch.targets.to(ctx.device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast(ctx.device):
            logits = logits_of(model(images))
            observer.after_forward(targets, logits, last_of_epoch=index == len(loader) - 1)
            loss = loss_fn(logits, targets)
        _optimizer_step(model, loss, optimizer, scaler, settings)
        batch_loss = loss.item()
        if not math.isfinite(batch_loss):
            if not ctx.enabled:
                raise _diverged(batch_loss, samples)
            diverged = batch_loss  # the other ranks learn it from the next step's flags
        loss_sum += batch_loss * len(targets)
        correct += int((logits.argmax(1) == targets).sum())
        samples += len(targets)
        observer.after_step(StepRecord(batch_loss, len(targets), data_seconds, time.perf_counter() - started))
        waited_since = time.perf_counter()
    if distributed.any_rank(ctx, diverged is not None):
        raise _diverged(diverged, samples)
    totals = distributed.all_sum(ctx, [loss_sum, correct, samples])
    return EpochResult(totals[0] / max(totals[2], 1), totals[1] / max(totals[2], 1), int(totals[2]), skipped)


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    samples: int
    skipped: list[image_folders.SkippedFile]
    targets: list[int]
    predictions: list[int]


@torch.no_grad()
def evaluate(
    model,
    loader,
    loss_fn,
    ctx,
    precision: Precision,
    stop: StopSignal | None = None,
    observer: StepObserver = NO_OBSERVER,
) -> Evaluation:
    model.eval()
    observer.begin_pass(train=False)
    loss_sum, skipped, targets_all, predictions_all = 0.0, [], [], []
    for batch in loader:
        if stop is not None and distributed.any_rank(ctx, stop.received):
            raise StopRequested("evaluation")
        skipped.extend(batch.skipped)
        if not len(batch):
            continue
        images = batch.images.to(ctx.device, non_blocking=True, memory_format=precision.memory_format())
        targets = batch.targets.to(ctx.device, non_blocking=True)
        with precision.autocast(ctx.device):
            logits = logits_of(model(images))
            loss = loss_fn(logits, targets)
        loss_sum += loss.item() * len(targets)
        targets_all.extend(targets.tolist())
        predictions_all.extend(logits.argmax(1).tolist())
    gathered = distributed.all_gather(ctx, (loss_sum, targets_all, predictions_all, skipped))
    loss_total = sum(item[0] for item in gathered)
    targets_all = [t for item in gathered for t in item[1]]
    predictions_all = [p for item in gathered for p in item[2]]
    skipped = [s for item in gathered for s in item[3]]
    count = len(targets_all)
    correct = sum(int(t == p) for t, p in zip(targets_all, predictions_all, strict=True))
    return Evaluation(
        loss_total / max(count, 1), correct / max(count, 1), count, skipped, targets_all, predictions_all
    )


def confusion_report(class_names: list[str], evaluation: Evaluation) -> dict:
    size = len(class_names)
    matrix = np.zeros((size, size), dtype=np.int64)
    for target, prediction in zip(evaluation.targets, evaluation.predictions, strict=True):
        matrix[target, prediction] += 1
    totals = matrix.sum(axis=1)
    per_class = {
        name: (float(matrix[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(class_names)
    }
    return {
        "class_names": class_names,
        "accuracy": evaluation.accuracy,
        "loss": evaluation.loss,
        "samples": evaluation.samples,
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }


class _Indexed(torch.utils.data.Dataset):
    """A dataset whose target is each item's index, so outcomes map back to their files."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        return (item[0], index) if isinstance(item, tuple) else item


@torch.no_grad()
def predict_dataset(
    model, dataset, device, precision: Precision, batch_size: int, num_workers: int, should_stop=None
):
    """(indices, probabilities) of every readable item of ``dataset``, in this process only; what
    was predicted so far when ``should_stop()`` turns true (SIGTERM)."""
    model.eval()
    loader = torch.utils.data.DataLoader(
        _Indexed(dataset), batch_size=batch_size, num_workers=num_workers, collate_fn=data.collate_skipping
    )
    indices, probabilities = [], []
    for batch in loader:
        if should_stop is not None and should_stop():
            break
        if not len(batch):
            continue
        images = batch.images.to(device, non_blocking=True, memory_format=precision.memory_format())
        with precision.autocast(device):
            logits = logits_of(model(images))
        probabilities.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        indices.extend(batch.targets.tolist())
    if not indices:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.asarray(indices), np.concatenate(probabilities)
