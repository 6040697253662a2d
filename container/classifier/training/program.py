"""The training program SageMaker runs as ``docker run IMAGE train``.

``main`` reads top to bottom: environment → hyperparameters → processes; ``run`` does
data → model → optimizer → resume → loop → save. Any failure ends in ``output/failure``
(reason first, as SageMaker shows the first 1024 characters) and a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from classifier import image_folders, redaction
from classifier.artifacts import ModelSpec, save_model
from classifier.debugging import hook as debugger
from classifier.metric_definitions import format_metrics_line, format_resumed_line
from classifier.models import create_model, freeze_all_but, load_pretrained
from classifier.training import data, distributed, job_outputs, watch
from classifier.training.checkpoint import load_checkpoint, save_checkpoint
from classifier.training.environment import TrainingEnvironment
from classifier.training.hyperparameters import Hyperparameters, parse_hyperparameters
from classifier.training.launcher import (
    EXIT_SIGTERM,
    TrainingInterrupted,
    configure_logging,
    run_processes,
)
from classifier.training.observers import (
    DebuggerSteps,
    ProfilerSteps,
    StepObserver,
    StepObservers,
    WatcherSteps,
)
from classifier.training.precision import choose_precision, probe_model
from classifier.training.results import BestEpoch, JobResult
from classifier.training.steps import (
    StepSettings,
    StopRequested,
    StopSignal,
    TrainingDiverged,
    confusion_report,
    evaluate,
    predict_dataset,
    train_one_epoch,
)
from classifier.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_size_for
from classifier.watching.base import Watchers

logger = logging.getLogger("classifier.training.program")

EXIT_FAILURE = 1


# --- model and optimizer -------------------------------------------------------------------


def build_model(env: TrainingEnvironment, hp: Hyperparameters, num_classes: int) -> nn.Module:
    model = create_model(hp.model, num_classes)
    if hp.pretrained:
        head = load_pretrained(model, hp.model, env.pretrained_channel())
        if hp.freeze_backbone:
            trainable = freeze_all_but(model, head)
            logger.info("backbone frozen; %d trainable parameters in %s", trainable, sorted(head))
    return model


# Adam and AdamW in one fused kernel per parameter: measured on ResNet-18 with 2 CPU threads,
# 61 against 106 ms per Adam step and 60 against 333 ms per AdamW step (the for-loop form torch
# uses on CPU by default), a share of every training step. SGD's for-loop form is its fastest
# there (16 ms, fused 31 ms); RMSprop has no fused form.
FUSED_DEVICE_TYPES = ("cpu", "cuda")


def build_optimizer(hp: Hyperparameters, parameters) -> torch.optim.Optimizer:
    parameters = [p for p in parameters if p.requires_grad]
    lr, decay = hp.learning_rate, hp.weight_decay
    if hp.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=hp.momentum, weight_decay=decay)
    fused = bool(parameters) and all(p.device.type in FUSED_DEVICE_TYPES for p in parameters)
    if hp.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, eps=hp.eps, weight_decay=decay, fused=fused)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, eps=hp.eps, weight_decay=decay, fused=fused)
    return torch.optim.RMSprop(parameters, lr=lr, momentum=hp.momentum, eps=hp.eps, weight_decay=decay)


def build_scheduler(
    hp: Hyperparameters, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if hp.lr_scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, hp.epochs // 3), gamma=0.1)
    if hp.lr_scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs)
    return None


# --- the job -------------------------------------------------------------------------------


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _dedupe(files: list[image_folders.SkippedFile]) -> list[image_folders.SkippedFile]:
    return list({f.path: f for f in files}.values())


def _profiler_for(env: TrainingEnvironment, hp: Hyperparameters, ctx):
    from classifier.debugging.profiler import TrainingProfiler, profiler_settings

    settings = profiler_settings(env.base_dir)
    return TrainingProfiler(settings, hp.num_workers, hp.batch_size, str(ctx.device))


def run(
    env: TrainingEnvironment, hp: Hyperparameters, local_rank: int, processes_per_host: int
) -> JobResult | None:
    """One process of the job; its result on rank 0, None on the others."""
    ctx = distributed.setup(
        env.host_rank,
        local_rank,
        processes_per_host,
        len(env.hosts),
        env.master_addr,
        env.master_port,
        env.resource_config.get("network_interface_name"),
    )
    stop = StopSignal()
    stop.install()
    try:
        result = _train(env, hp, ctx, stop)
        distributed.barrier(ctx)
        return result
    finally:
        distributed.teardown(ctx)


@dataclass
class TrainingState:
    """Everything an epoch changes and a checkpoint keeps."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    hook: Any  # an smdebug hook, or None
    identity: dict
    step: StepSettings
    start_epoch: int = 1
    history: list[dict] = field(default_factory=list)
    best: BestEpoch = field(default_factory=BestEpoch)
    skipped: dict[str, list[image_folders.SkippedFile]] = field(
        default_factory=lambda: {"train": [], "valid": []}
    )

    def restore(self, saved: dict) -> None:
        _unwrap(self.model).load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved.get("scheduler"):
            self.scheduler.load_state_dict(saved["scheduler"])
        # A GradScaler only runs under fp16: a checkpoint from another precision has no state
        # for it (or state this one does not need).
        if self.scaler.is_enabled() and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.start_epoch, self.history = saved["epoch"] + 1, saved["history"]
        self.best = BestEpoch(**saved["best"])
        self.skipped = {k: [image_folders.SkippedFile(**f) for f in v] for k, v in saved["skipped"].items()}

    def checkpoint(self, completed_epoch: int, hp: Hyperparameters) -> dict:
        return {
            "identity": self.identity,
            "epoch": completed_epoch,
            "model": _unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            # A plain dict: checkpoints load with weights_only, which refuses classes.
            "best": dict(vars(self.best)),
            "skipped": {k: [vars(f) for f in v] for k, v in self.skipped.items()},
            "hyperparameters": hp.to_dict(),
        }

    def keep_if_best(self, epoch: int, valid) -> None:
        if self.best.beaten_by(valid):
            weights = {k: v.detach().cpu().clone() for k, v in _unwrap(self.model).state_dict().items()}
            self.best = BestEpoch(epoch, valid.accuracy, valid.loss, weights)


def _train(env: TrainingEnvironment, hp: Hyperparameters, ctx, stop: StopSignal) -> JobResult | None:
    seed_everything(hp.seed, ctx.rank)
    torch.backends.cudnn.benchmark = True
    if ctx.is_main:
        _log_resolved(env, hp, ctx)
    channels = data.load_channels(env, hp)
    if ctx.is_main:
        logger.info(
            "data: %d classes; train=%d valid=%d test=%s images",
            len(channels.class_names),
            len(channels.train),
            len(channels.valid),
            len(channels.test) if channels.test else "none",
        )
    state = _build_state(env, hp, ctx, channels.class_names)
    _resume(env, hp, ctx, state)
    profiler = _profiler_for(env, hp, ctx) if ctx.is_main else None
    watchers = watch.watchers_for(env, hp) if ctx.is_main else Watchers([])
    try:
        return Job(env, hp, ctx, stop, channels, state, profiler, watchers).run()
    finally:
        watchers.close()


def _log_resolved(env: TrainingEnvironment, hp: Hyperparameters, ctx) -> None:
    """What the job resolved, once at its start, before anything can fail: a failed job's log
    still says what it ran with (defaults included)."""
    logger.info(
        "job %s resolved: hyperparameters %s; hosts %s (this host %s); rank %d of %d; device %s; "
        "%d intra-op threads",
        env.job_name, json.dumps(hp.to_dict(), sort_keys=True), env.hosts, env.current_host,
        ctx.rank, ctx.world_size, ctx.device, torch.get_num_threads(),
    )  # fmt: skip


def _build_state(env: TrainingEnvironment, hp: Hyperparameters, ctx, class_names: list[str]) -> TrainingState:
    model = build_model(env, hp, len(class_names)).to(ctx.device)
    unsafe_bf16 = probe_model(model, hp.image_size, hp.model)
    precision = choose_precision(hp.precision, ctx.device, hp.image_size, unsafe_bf16)
    if ctx.is_main:
        logger.info(
            "precision %s, channels_last=%s: %s",
            precision.name, str(precision.channels_last).lower(), precision.reason,
        )  # fmt: skip
    model = model.to(memory_format=precision.memory_format())
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    hook = debugger.create_hook(env.debughook_config_file, hp.debug, env.tensors_dir)
    debugger.attach(hook, model, loss_fn, from_sagemaker_config=env.debughook_config_file.exists())
    if ctx.enabled:
        model = DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )
    optimizer = build_optimizer(hp, model.parameters())
    return TrainingState(
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=build_scheduler(hp, optimizer),
        scaler=precision.grad_scaler(ctx.device),
        hook=hook,
        identity={**hp.run_identity(), "class_names": class_names},
        step=StepSettings(precision, hp.clip_grad_norm),
    )


def _resume(env: TrainingEnvironment, hp: Hyperparameters, ctx, state: TrainingState) -> None:
    saved = load_checkpoint(env.checkpoint_dir, state.identity)
    if saved is None:
        return
    state.restore(saved)
    if ctx.is_main:
        print(format_resumed_line(saved["epoch"], hp.epochs), flush=True)


class Job:
    """One process's job once its data, model and state are built: the phases ``run`` calls,
    train → test → save → finish, and the one way out on SIGTERM (:meth:`interrupted`)."""

    def __init__(
        self, env: TrainingEnvironment, hp: Hyperparameters, ctx, stop: StopSignal, channels,
        state: TrainingState, profiler, watchers: Watchers,
    ):  # fmt: skip
        self.env, self.hp, self.ctx, self.stop = env, hp, ctx, stop
        self.channels, self.state, self.profiler, self.watchers = channels, state, profiler, watchers
        observers: list[StepObserver] = [DebuggerSteps(state.hook), WatcherSteps(watchers)]
        if profiler is not None:
            observers.append(ProfilerSteps(profiler))
        self.observer = StepObservers(observers)
        self.model_saved = False

    def run(self) -> JobResult | None:
        """The whole job; its result on rank 0, None on the others."""
        self.train()
        model = self.best_model()
        test_report = self.test(model)
        if not self.ctx.is_main:
            return None
        result = self.save(model, test_report)
        self.finish(model, test_report, result)
        return result

    def train(self) -> None:
        """Every epoch, or until early stopping; the Debugger hook is flushed however it ends,
        and a job that fails still gets its rules and report."""
        failed = False
        try:
            with self.profiler if self.profiler is not None else contextlib.nullcontext():
                self._epochs()
        except StopRequested as stopped:
            raise self.interrupted(str(stopped)) from None
        except (TrainingDiverged, image_folders.DataError):
            failed = True
            raise
        finally:
            debugger.close(self.state.hook)
            if failed and self.ctx.is_main:
                self._rules_and_report(None)

    def _epochs(self) -> None:
        train_loader = data.make_loader(self.channels.train, self.hp, self.ctx, train=True)
        valid_loader = data.make_loader(self.channels.valid, self.hp, self.ctx, train=False)
        for epoch in range(self.state.start_epoch, self.hp.epochs + 1):
            self._epoch(epoch, train_loader, valid_loader)
            if self._stops_early(epoch):
                return

    def _epoch(self, epoch: int, train_loader, valid_loader) -> None:
        """Train, validate, report and checkpoint one epoch."""
        state, ctx = self.state, self.ctx
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        learning_rate = state.optimizer.param_groups[0]["lr"]
        result = train_one_epoch(
            state.model, train_loader, state.loss_fn, state.optimizer, state.scaler,
            ctx, state.step, self.stop, self.observer,
        )  # fmt: skip
        train_seconds = time.perf_counter() - started
        if result.interrupted:
            raise StopRequested(f"epoch {epoch}")
        precision = state.step.precision
        valid = evaluate(state.model, valid_loader, state.loss_fn, ctx, precision, self.stop, self.observer)
        if epoch == state.start_epoch:
            self._check_skipped_files(result.skipped, valid.skipped)
        if state.scheduler is not None:
            state.scheduler.step()
        metrics = {
            "train_loss": result.loss,
            "train_accuracy": result.accuracy,
            "valid_loss": valid.loss,
            "valid_accuracy": valid.accuracy,
        }
        images_per_second = result.samples / train_seconds
        state.history.append(
            {
                "epoch": epoch,
                **metrics,
                "train_seconds": train_seconds,
                "train_images_per_second": images_per_second,
            }
        )
        if ctx.is_main:
            # Only the global rank 0 prints: one datapoint per epoch, not one per host.
            # API reference, HyperbandStrategyConfig: "For distributed training jobs,
            # ensure that duplicate metrics are not printed in the logs across the
            # individual nodes in a training job. If multiple nodes are publishing
            # duplicate or incorrect metrics, training jobs may make an incorrect
            # stopping decision".
            print(format_metrics_line({"epoch": epoch}, **metrics), flush=True)
            self.watchers.epoch(epoch, watch.epoch_values(metrics, learning_rate, images_per_second))
        state.keep_if_best(epoch, valid)
        if ctx.is_main:
            save_checkpoint(self.env.checkpoint_dir, state.checkpoint(epoch, self.hp))

    def _stops_early(self, epoch: int) -> bool:
        patience, best = self.hp.early_stopping_patience, self.state.best
        if not patience or epoch - best.epoch < patience:
            return False
        if self.ctx.is_main:
            print(f"early stopping: no valid_accuracy improvement since epoch {best.epoch}", flush=True)
        return True

    def _check_skipped_files(self, train_skipped, valid_skipped) -> None:
        """After the first epoch every file has been read once: too many unreadable ones fail the job."""
        skipped, channels = self.state.skipped, self.channels
        skipped["train"] = _dedupe(distributed_skipped(self.ctx, train_skipped))
        skipped["valid"] = _dedupe(valid_skipped)
        for split, dataset in (("train", channels.train), ("valid", channels.valid)):
            data.check_skipped_share(split, skipped[split], len(dataset), self.hp.max_skipped_fraction)

    def best_model(self) -> nn.Module:
        """The network with the best epoch's weights (the last ones if no epoch ran)."""
        model = _unwrap(self.state.model)
        if self.state.best.state_dict is not None:
            model.load_state_dict(self.state.best.state_dict)
        return model

    def test(self, model: nn.Module) -> dict | None:
        """The test split's confusion report for ``model``; None without a test channel."""
        channels, hp = self.channels, self.hp
        if channels.test is None:
            return None
        test_loader = data.make_loader(channels.test, hp, self.ctx, train=False)
        try:
            test = evaluate(
                model, test_loader, self.state.loss_fn, self.ctx, self.state.step.precision, self.stop
            )
        except StopRequested:
            raise self.interrupted("the test pass") from None
        self.state.skipped["test"] = _dedupe(test.skipped)
        data.check_skipped_share(
            "test", self.state.skipped["test"], len(channels.test), hp.max_skipped_fraction
        )
        if self.ctx.is_main:
            print(format_metrics_line(test_loss=test.loss, test_accuracy=test.accuracy), flush=True)
        return confusion_report(channels.class_names, test)

    def save(self, model: nn.Module, test_report: dict | None) -> JobResult:
        """The model and its exported forms, then metrics.json, the skipped files, the test report."""
        env, hp, state = self.env, self.hp, self.state
        spec = _model_spec(hp, self.channels.class_names)
        save_model(env.model_dir, model.state_dict(), spec)
        self.model_saved = True
        if not self.stop.received and hp.inference_export != "none":
            _export_for_serving(env, model, spec, self.channels, int8=hp.inference_export == "openvino-int8")
        result = JobResult(
            best_epoch=state.best.epoch,
            epochs_run=len(state.history),
            history=state.history,
            test={k: test_report[k] for k in ("accuracy", "loss", "samples")} if test_report else None,
            train_images_per_second=_overall_throughput(state.history),
            skipped_files={k: len(v) for k, v in state.skipped.items()},
            hyperparameters=hp.to_dict(),
            world_size=self.ctx.world_size,
            precision=state.step.precision.describe(),
        )
        job_outputs.write_metrics(env.output_data_dir, result.to_dict())
        job_outputs.write_skipped(env.output_data_dir, state.skipped)
        if test_report is not None:
            job_outputs.write_test_report(env.output_data_dir, test_report)
        logger.info("model saved to %s (best epoch %d)", env.model_dir, state.best.epoch)
        return result

    def finish(self, model: nn.Module, test_report: dict | None, result: JobResult) -> None:
        """The rules and report, the watchers' end; then a finished tuning trial's checkpoints go."""
        rule_results, summary = self._rules_and_report(test_report)
        if self.watchers.watchers and not self.stop.received:
            self.watch_end(model, test_report, result)
            self.watchers.rules(rule_results, summary)
        if self.stop.received:
            raise self.interrupted("the end-of-job rules and report")
        _drop_finished_trial_checkpoints(self.env)

    def interrupted(self, during: str) -> TrainingInterrupted:
        """The way out on SIGTERM, from any phase: the best weights so far become the model (the
        final one, once saved, stays), and the message says where the model and the checkpoint
        to resume from are. The checkpoint on disk is the last clean end of epoch: a mid-epoch
        state would resume as a finished epoch."""
        env, best, history = self.env, self.state.best, self.state.history
        if not self.model_saved and self.ctx.is_main and best.state_dict is not None:
            save_model(env.model_dir, best.state_dict, _model_spec(self.hp, self.channels.class_names))
            logger.info("SIGTERM: best model so far (epoch %d) saved to %s", best.epoch, env.model_dir)
        completed = history[-1]["epoch"] if history else 0
        return TrainingInterrupted(
            f"SIGTERM during {during}; the model (best epoch {best.epoch}) is in {env.model_dir}; the "
            f"checkpoint of the last completed epoch ({completed}) is in {env.checkpoint_dir} and a "
            "restarted job resumes from it"
        )

    def _rules_and_report(self, test_report: dict | None) -> tuple[list, dict | None]:
        """The rules and the job report; returns the rule results and the profiler's summary."""
        hook, stop = self.state.hook, self.stop
        tensors_dir = Path(hook.out_dir) if hook is not None else None
        summary = self.profiler.summary() if self.profiler is not None else None
        results = job_outputs.run_rules_and_report(
            self.env.output_data_dir, tensors_dir, self.state.history, summary, test_report,
            should_stop=lambda: stop.received,
        )  # fmt: skip
        return results, summary

    def watch_end(self, model: nn.Module, test_report: dict | None, result: JobResult) -> None:
        """The watchers' end of job: final metrics, and figures from one more pass over at most
        ``watch.FIGURE_IMAGES`` validation images on this process. The model is saved: a figure
        that fails is logged, not the job's end."""
        started = time.perf_counter()
        figures = {}
        try:
            subset = watch.figure_subset(self.channels.valid)
            outcomes = predict_dataset(
                model, subset, self.ctx.device, self.state.step.precision, self.hp.batch_size,
                min(self.hp.num_workers, 2), should_stop=lambda: self.stop.received,
            )  # fmt: skip
            figures = watch.end_figures(self.channels.class_names, subset, outcomes, test_report)
        except Exception as error:  # noqa: BLE001 - figures are optional; the run's metrics still go
            logger.warning("no end-of-job figures for the watchers: %s: %s", type(error).__name__, error)
        self.watchers.finish(watch.job_end(self.env, result, figures))
        logger.info("watchers given the job's end in %.1f s", time.perf_counter() - started)


def _drop_finished_trial_checkpoints(env: TrainingEnvironment) -> None:
    """A finished tuning trial's checkpoints go: every trial of a tuning job syncs one S3
    prefix, and SageMaker restores all of it into each new trial ("Existing checkpoints in S3
    are written to the SageMaker container at the start of the job"); a deletion here is
    mirrored there ("If a checkpoint is deleted in the SageMaker container, it will also be
    deleted in the S3 folder", developer guide, "Use Checkpoints in Amazon SageMaker"). So a
    new trial downloads only the checkpoints of trials still running. A plain training job
    keeps its checkpoint: a later job may resume it for more epochs."""
    if env.is_tuning_trial and env.checkpoint_dir.is_dir():
        shutil.rmtree(env.checkpoint_dir)
        logger.info("tuning trial finished: removed its checkpoints %s", env.checkpoint_dir)


def _model_spec(hp: Hyperparameters, class_names: list[str]) -> ModelSpec:
    return ModelSpec(
        hp.model, tuple(class_names), hp.image_size, IMAGENET_MEAN, IMAGENET_STD,
        resize_size=resize_size_for(hp.image_size), interpolation="bilinear",
    )  # fmt: skip


def _export_for_serving(
    env: TrainingEnvironment, model: nn.Module, spec: ModelSpec, channels, int8: bool
) -> None:
    """The exported forms the server runs fastest, with their parity on validation images.

    The int8 model is calibrated on training images prepared as the server prepares them, so the
    parity recorded on validation images is measured on images the calibration never saw.
    The model is already saved: an export that fails leaves a model PyTorch serves.
    """
    from classifier.inference.export import CALIBRATION_SAMPLES, export_model, pixel_transform, sample_images

    started = time.perf_counter()
    try:
        # A new network with the trained weights, not a deepcopy: that would carry the Debugger
        # hook's forward hooks, which break OpenVINO's trace (the job then served PyTorch only).
        cpu_copy = create_model(spec.architecture, spec.num_classes)
        cpu_copy.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
        cpu_copy.eval()
        pixels, classes = pixel_transform(spec), channels.class_names
        valid = image_folders.ImageFolderDataset(channels.valid.root, classes, pixels, "valid")
        calibration = []
        if int8:
            train = image_folders.ImageFolderDataset(channels.train.root, classes, pixels, "train")
            calibration = sample_images(train, CALIBRATION_SAMPLES)
        export_model(
            cpu_copy, spec, env.model_dir, sample_images(valid), torch.get_num_threads(), calibration
        )
    except Exception as error:  # noqa: BLE001 - tracing fails in many ways; the model stands
        logger.warning(
            "no exported form for serving (%s: %s); PyTorch will serve", type(error).__name__, error
        )
        return
    logger.info("exported for serving in %.1f s", time.perf_counter() - started)


def _overall_throughput(history: list[dict]) -> float | None:
    seconds = sum(h["train_seconds"] for h in history)
    images = sum(h["train_seconds"] * h["train_images_per_second"] for h in history)
    return images / seconds if seconds else None


def distributed_skipped(ctx, files: list[image_folders.SkippedFile]) -> list[image_folders.SkippedFile]:
    return [f for rank_files in distributed.all_gather(ctx, files) for f in rank_files]


# --- entry point -----------------------------------------------------------------------------


def main() -> None:
    """Entry point of ``train``: run the job; turn any failure into output/failure and an exit code."""
    redaction.install(os.environ)
    configure_logging()
    env = TrainingEnvironment.from_environ()
    env.failure_file.unlink(missing_ok=True)
    try:
        hp = parse_hyperparameters(env.hyperparameters)
        env.check_input_modes()
        from sagemaker_training.environment import num_gpus

        run_processes(run, env, hp, env.processes_per_host(num_gpus()))
    except TrainingInterrupted as error:
        logger.warning("%s", error)
        if not env.failure_file.exists():
            job_outputs.write_failure(env.failure_file, error)
        sys.exit(EXIT_SIGTERM)
    except BaseException as error:  # the one top-level handler: every failure gets a reason
        if isinstance(error, SystemExit) and error.code in (0, None):
            raise
        logger.error("training failed: %s: %s", type(error).__name__, error)
        if not env.failure_file.exists():
            job_outputs.write_failure(env.failure_file, error)
        traceback.print_exc()
        sys.exit(EXIT_FAILURE)
