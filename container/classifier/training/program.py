"""The training program SageMaker runs as ``docker run IMAGE train``.

``main`` reads top to bottom: environment → hyperparameters → processes; ``run`` does
data → model → optimizer → resume → loop → save. Any failure ends in ``output/failure``
(reason first, as SageMaker shows the first 1024 characters) and a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from classifier.artifacts import ModelSpec, save_model
from classifier.debugging import hook as debugger
from classifier.metric_definitions import format_metrics_line
from classifier.models import create_model, freeze_all_but, load_pretrained, logits_of
from classifier.training import data, distributed, job_outputs
from classifier.training.checkpoint import load_checkpoint, save_checkpoint
from classifier.training.environment import TrainingEnvironment
from classifier.training.hyperparameters import Hyperparameters, parse_hyperparameters
from classifier.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform

logger = logging.getLogger("classifier.training.program")

EXIT_FAILURE = 1
EXIT_SIGTERM = 128 + signal.SIGTERM


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; continuing would only waste the instance."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM arrived (spot interruption, StopTrainingJob, docker stop); a checkpoint was saved."""


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


# --- data -----------------------------------------------------------------------------


@dataclass
class Channels:
    class_names: list[str]
    train: data.ImageFolderDataset
    valid: data.ImageFolderDataset
    test: data.ImageFolderDataset | None


def load_channels(env: TrainingEnvironment, hp: Hyperparameters) -> Channels:
    train_root = data.resolve_channel(env.train_channel())
    class_names = data.find_class_names(train_root)
    valid_root = data.resolve_channel(env.valid_channel())
    data.check_same_classes(class_names, valid_root, "valid")
    test_dir = env.test_channel()
    test_root = data.resolve_channel(test_dir) if test_dir else None
    if test_root is not None:
        data.check_same_classes(class_names, test_root, "test")
    evaluation = eval_transform(hp.image_size, IMAGENET_MEAN, IMAGENET_STD)
    return Channels(
        class_names=class_names,
        train=data.ImageFolderDataset(
            train_root, class_names, train_transform(hp.image_size, hp.augmentation), "train"
        ),
        valid=data.ImageFolderDataset(valid_root, class_names, evaluation, "valid"),
        test=data.ImageFolderDataset(test_root, class_names, evaluation, "test") if test_root else None,
    )


def make_loader(dataset, hp: Hyperparameters, ctx: distributed.DistributedContext, train: bool):
    if train:
        sampler = (
            DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=hp.seed)
            if ctx.enabled
            else torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(hp.seed))
        )
    else:
        sampler = data.ShardSampler(len(dataset), ctx.rank, ctx.world_size)
    return DataLoader(
        dataset,
        batch_size=hp.batch_size,
        sampler=sampler,
        num_workers=hp.num_workers,
        collate_fn=data.collate_skipping,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=hp.num_workers > 0,
        prefetch_factor=4 if hp.num_workers > 0 else None,
    )


# --- model and optimizer -------------------------------------------------------------------


def build_model(env: TrainingEnvironment, hp: Hyperparameters, num_classes: int) -> nn.Module:
    model = create_model(hp.model, num_classes)
    if hp.pretrained:
        head = load_pretrained(model, hp.model, env.pretrained_channel())
        if hp.freeze_backbone:
            trainable = freeze_all_but(model, head)
            logger.info("backbone frozen; %d trainable parameters in %s", trainable, sorted(head))
    return model


def build_optimizer(hp: Hyperparameters, parameters) -> torch.optim.Optimizer:
    parameters = [p for p in parameters if p.requires_grad]
    common = {"lr": hp.learning_rate, "weight_decay": hp.weight_decay}
    if hp.optimizer == "sgd":
        return torch.optim.SGD(parameters, momentum=hp.momentum, **common)
    if hp.optimizer == "adam":
        return torch.optim.Adam(parameters, eps=hp.eps, **common)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(parameters, eps=hp.eps, **common)
    return torch.optim.RMSprop(parameters, momentum=hp.momentum, eps=hp.eps, **common)


def build_scheduler(hp: Hyperparameters, optimizer):
    if hp.lr_scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, hp.epochs // 3), gamma=0.1)
    if hp.lr_scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs)
    return None


def autocast_for(device: torch.device, enabled: bool):
    # fp16 with a GradScaler on GPU; bfloat16 (no scaler needed) on CPU.
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


# --- steps ---------------------------------------------------------------------------------


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    samples: int
    skipped: list[data.SkippedFile] = field(default_factory=list)
    interrupted: bool = False


def _diverged(loss: float | None, samples: int) -> TrainingDiverged:
    where = f"became {loss}" if loss is not None else "became NaN or infinite on another rank"
    return TrainingDiverged(
        f"training loss {where} after {samples} samples; lower learning_rate "
        "(or enable gradient-friendly settings such as amp=false)"
    )


def train_one_epoch(
    model, loader, loss_fn, optimizer, scaler, ctx, amp: bool, hook, profiler, stop: StopSignal
) -> EpochResult:
    model.train()
    debugger.set_mode(hook, train=True)
    loss_sum, correct, samples, skipped = 0.0, 0, 0, []
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
        images = batch.images.to(ctx.device, non_blocking=True, memory_format=torch.channels_last)
        targets = batch.targets.to(ctx.device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(ctx.device, amp):
            logits = logits_of(model(images))
            debugger.record_batch(hook, targets, logits, last_of_epoch=index == len(loader) - 1)
            loss = loss_fn(logits, targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        batch_loss = loss.item()
        if not math.isfinite(batch_loss):
            if not ctx.enabled:
                raise _diverged(batch_loss, samples)
            diverged = batch_loss  # the other ranks learn it from the next step's flags
        loss_sum += batch_loss * len(targets)
        correct += int((logits.argmax(1) == targets).sum())
        samples += len(targets)
        if profiler is not None:
            profiler.record_step(data_seconds, time.perf_counter() - started, len(targets))
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
    skipped: list[data.SkippedFile]
    targets: list[int]
    predictions: list[int]


@torch.no_grad()
def evaluate(model, loader, loss_fn, ctx, amp: bool, hook, stop: StopSignal | None = None) -> Evaluation:
    model.eval()
    debugger.set_mode(hook, train=False)
    loss_sum, skipped, targets_all, predictions_all = 0.0, [], [], []
    for batch in loader:
        if stop is not None and distributed.any_rank(ctx, stop.received):
            raise StopRequested("evaluation")
        skipped.extend(batch.skipped)
        if not len(batch):
            continue
        images = batch.images.to(ctx.device, non_blocking=True, memory_format=torch.channels_last)
        targets = batch.targets.to(ctx.device, non_blocking=True)
        with autocast_for(ctx.device, amp):
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


# --- the job -------------------------------------------------------------------------------


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _dedupe(files: list[data.SkippedFile]) -> list[data.SkippedFile]:
    return list({f.path: f for f in files}.values())


def _profiler_for(env: TrainingEnvironment, hp: Hyperparameters, ctx):
    from classifier.debugging.profiler import TrainingProfiler, profiler_settings

    settings = profiler_settings(env.base_dir)
    return TrainingProfiler(settings, hp.num_workers, hp.batch_size, str(ctx.device))


def run(env: TrainingEnvironment, hp: Hyperparameters, local_rank: int, processes_per_host: int) -> dict:
    """One process of the job; returns the final metrics (rank 0) or an empty dict."""
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
        final = _train(env, hp, ctx, stop)
        distributed.barrier(ctx)
        return final
    finally:
        distributed.teardown(ctx)


def _train(env: TrainingEnvironment, hp: Hyperparameters, ctx, stop: StopSignal) -> dict:
    seed_everything(hp.seed, ctx.rank)
    torch.backends.cudnn.benchmark = True
    amp = hp.amp

    # data
    channels = load_channels(env, hp)
    class_names = channels.class_names
    if ctx.is_main:
        logger.info(
            "data: %d classes; train=%d valid=%d test=%s images",
            len(class_names),
            len(channels.train),
            len(channels.valid),
            len(channels.test) if channels.test else "none",
        )
    train_loader = make_loader(channels.train, hp, ctx, train=True)
    valid_loader = make_loader(channels.valid, hp, ctx, train=False)

    # model
    model = build_model(env, hp, len(class_names)).to(ctx.device)
    model = model.to(memory_format=torch.channels_last)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    hook = debugger.create_hook(env.debughook_config_file, hp.debug, env.tensors_dir)
    debugger.attach(hook, model, loss_fn, from_sagemaker_config=env.debughook_config_file.exists())
    if ctx.enabled:
        model = DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )

    # optimizer
    optimizer = build_optimizer(hp, model.parameters())
    scheduler = build_scheduler(hp, optimizer)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp and ctx.device.type == "cuda")

    # resume
    identity = {**hp.run_identity(), "class_names": class_names}
    state = load_checkpoint(env.checkpoint_dir, identity)
    start_epoch, history = 1, []
    best = {"epoch": 0, "valid_accuracy": -1.0, "valid_loss": math.inf, "state_dict": None}
    skipped = {"train": [], "valid": []}
    if state is not None:
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, history, best = state["epoch"] + 1, state["history"], state["best"]
        skipped = {k: [data.SkippedFile(**f) for f in v] for k, v in state["skipped"].items()}
        if ctx.is_main:
            print(f"resumed from checkpoint: epoch={state['epoch']} of {hp.epochs}", flush=True)

    def checkpoint(completed_epoch: int) -> None:
        if ctx.is_main:
            save_checkpoint(
                env.checkpoint_dir,
                {
                    "identity": identity,
                    "epoch": completed_epoch,
                    "model": _unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict(),
                    "history": history,
                    "best": best,
                    "skipped": {k: [vars(f) for f in v] for k, v in skipped.items()},
                    "hyperparameters": hp.to_dict(),
                },
            )

    # loop
    profiler = _profiler_for(env, hp, ctx) if ctx.is_main else None
    failure: BaseException | None = None
    try:
        with profiler if profiler is not None else contextlib.nullcontext():
            for epoch in range(start_epoch, hp.epochs + 1):
                if isinstance(train_loader.sampler, DistributedSampler):
                    train_loader.sampler.set_epoch(epoch)
                epoch_started = time.perf_counter()
                result = train_one_epoch(
                    model, train_loader, loss_fn, optimizer, scaler, ctx, amp, hook, profiler, stop
                )
                train_seconds = time.perf_counter() - epoch_started
                if result.interrupted:
                    raise StopRequested(f"epoch {epoch}")
                valid = evaluate(model, valid_loader, loss_fn, ctx, amp, hook, stop)
                if epoch == start_epoch:
                    skipped["train"] = _dedupe(distributed_skipped(ctx, result.skipped))
                    skipped["valid"] = _dedupe(valid.skipped)
                    data.check_skipped_share(
                        "train", skipped["train"], len(channels.train), hp.max_skipped_fraction
                    )
                    data.check_skipped_share(
                        "valid", skipped["valid"], len(channels.valid), hp.max_skipped_fraction
                    )
                if scheduler is not None:
                    scheduler.step()
                metrics = {
                    "train_loss": result.loss,
                    "train_accuracy": result.accuracy,
                    "valid_loss": valid.loss,
                    "valid_accuracy": valid.accuracy,
                }
                history.append(
                    {
                        "epoch": epoch,
                        **metrics,
                        "train_seconds": train_seconds,
                        "train_images_per_second": result.samples / train_seconds,
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
                improved = (valid.accuracy, -valid.loss) > (best["valid_accuracy"], -best["valid_loss"])
                if improved:
                    best = {
                        "epoch": epoch,
                        "valid_accuracy": valid.accuracy,
                        "valid_loss": valid.loss,
                        "state_dict": {
                            k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()
                        },
                    }
                checkpoint(epoch)
                if hp.early_stopping_patience and epoch - best["epoch"] >= hp.early_stopping_patience:
                    if ctx.is_main:
                        print(
                            f"early stopping: no valid_accuracy improvement since epoch {best['epoch']}",
                            flush=True,
                        )
                    break
    except (TrainingDiverged, data.DataError) as error:
        failure = error
        raise
    except StopRequested as stopped:
        # The checkpoint on disk is the last clean end of epoch: a mid-epoch state would
        # resume as a finished epoch. The best weights so far become the model, so a job
        # stopped at MaxWaitTime still leaves one.
        _save_best_model(env, ctx, hp, class_names, best)
        raise TrainingInterrupted(
            f"SIGTERM during {stopped}; the checkpoint of the last completed epoch "
            f"({len(history) and history[-1]['epoch']}) is in {env.checkpoint_dir} and a restarted "
            f"job resumes from it; the best model so far (epoch {best['epoch']}) is in {env.model_dir}"
        ) from None
    finally:
        debugger.close(hook)
        if ctx.is_main and failure is not None:
            _finish_reports(env, hook, history, profiler, None, stop)

    # save
    final_model = _unwrap(model)
    if best["state_dict"] is not None:
        final_model.load_state_dict(best["state_dict"])
    test_report = None
    if channels.test is not None:
        test_loader = make_loader(channels.test, hp, ctx, train=False)
        try:
            test = evaluate(final_model, test_loader, loss_fn, ctx, amp, None, stop)
        except StopRequested:
            _save_best_model(env, ctx, hp, class_names, best)
            raise TrainingInterrupted(
                f"SIGTERM during the test pass; the model (best epoch {best['epoch']}) is in {env.model_dir}"
            ) from None
        skipped["test"] = _dedupe(test.skipped)
        data.check_skipped_share("test", skipped["test"], len(channels.test), hp.max_skipped_fraction)
        test_report = confusion_report(class_names, test)
        if ctx.is_main:
            print(format_metrics_line(test_loss=test.loss, test_accuracy=test.accuracy), flush=True)
    if not ctx.is_main:
        return {}
    save_model(env.model_dir, final_model.state_dict(), _model_spec(hp, class_names))
    final = {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "history": history,
        "test": {k: test_report[k] for k in ("accuracy", "loss", "samples")} if test_report else None,
        "train_images_per_second": _overall_throughput(history),
        "skipped_files": {k: len(v) for k, v in skipped.items()},
        "hyperparameters": hp.to_dict(),
        "world_size": ctx.world_size,
    }
    job_outputs.write_metrics(env.output_data_dir, final)
    job_outputs.write_skipped(env.output_data_dir, skipped)
    if test_report is not None:
        job_outputs.write_test_report(env.output_data_dir, test_report)
    logger.info("model saved to %s (best epoch %d)", env.model_dir, best["epoch"])
    _finish_reports(env, hook, history, profiler, test_report, stop)
    if stop.received:
        raise TrainingInterrupted(
            f"SIGTERM during the end-of-job rules and report; the model is in {env.model_dir}"
        )
    return final


def _model_spec(hp: Hyperparameters, class_names: list[str]) -> ModelSpec:
    return ModelSpec(hp.model, tuple(class_names), hp.image_size, IMAGENET_MEAN, IMAGENET_STD)


def _save_best_model(env: TrainingEnvironment, ctx, hp: Hyperparameters, class_names, best: dict) -> None:
    if ctx.is_main and best["state_dict"] is not None:
        save_model(env.model_dir, best["state_dict"], _model_spec(hp, class_names))
        logger.info("SIGTERM: best model so far (epoch %d) saved to %s", best["epoch"], env.model_dir)


def _overall_throughput(history: list[dict]) -> float | None:
    seconds = sum(h["train_seconds"] for h in history)
    images = sum(h["train_seconds"] * h["train_images_per_second"] for h in history)
    return images / seconds if seconds else None


def distributed_skipped(ctx, files: list[data.SkippedFile]) -> list[data.SkippedFile]:
    return [f for rank_files in distributed.all_gather(ctx, files) for f in rank_files]


def _finish_reports(env, hook, history, profiler, test_report, stop: StopSignal) -> None:
    tensors_dir = Path(hook.out_dir) if hook is not None else None
    summary = profiler.summary() if profiler is not None else None
    job_outputs.run_rules_and_report(
        env.output_data_dir, tensors_dir, history, summary, test_report, should_stop=lambda: stop.received
    )


# --- entry point -----------------------------------------------------------------------------


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _spawned(local_rank: int, env: TrainingEnvironment, hp: Hyperparameters, processes_per_host: int) -> None:
    _configure_logging()
    try:
        run(env, hp, local_rank, processes_per_host)
    except TrainingInterrupted as error:
        if local_rank == 0 and env.host_rank == 0:
            job_outputs.write_failure(env.failure_file, error)
        sys.exit(EXIT_SIGTERM)
    except BaseException as error:
        if not env.failure_file.exists():
            job_outputs.write_failure(env.failure_file, error)
        raise


def _run_processes(env: TrainingEnvironment, hp: Hyperparameters, processes_per_host: int) -> None:
    """One process per GPU (or as SM_PROCESSES_PER_HOST says); SIGTERM is passed on to each."""
    if processes_per_host == 1:
        run(env, hp, 0, 1)
        return
    import torch.multiprocessing as mp

    context = mp.start_processes(
        _spawned,
        args=(env, hp, processes_per_host),
        nprocs=processes_per_host,
        join=False,
        start_method="spawn",
    )

    def forward(signum, frame):
        for process in context.processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, forward)
    try:
        while not context.join():
            pass
    except mp.ProcessExitedException as error:
        if error.exit_code == EXIT_SIGTERM:
            raise TrainingInterrupted(
                f"SIGTERM: worker processes stopped after checkpointing to {env.checkpoint_dir}"
            ) from error
        raise


def main() -> None:
    """Entry point of ``train``: run the job; turn any failure into output/failure and an exit code."""
    _configure_logging()
    env = TrainingEnvironment.from_environ()
    env.failure_file.unlink(missing_ok=True)
    try:
        hp = parse_hyperparameters(env.hyperparameters)
        env.check_input_modes()
        from sagemaker_training.environment import num_gpus

        processes_per_host = env.processes_per_host(num_gpus())
        _run_processes(env, hp, processes_per_host)
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
