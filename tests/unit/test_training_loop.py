"""Step functions in-process: explicit arguments in, metrics out."""

import math

import pytest
import torch
from torch import nn

from classifier import image_folders
from classifier.models import create_model
from classifier.training import distributed
from classifier.training.data import make_loader
from classifier.training.hyperparameters import parse_hyperparameters
from classifier.training.observers import StepObserver, StepObservers
from classifier.training.precision import choose_precision
from classifier.training.program import build_optimizer, build_scheduler
from classifier.training.steps import (
    StepSettings,
    StopSignal,
    TrainingDiverged,
    confusion_report,
    evaluate,
    train_one_epoch,
)
from classifier.transforms import eval_transform

CTX = distributed.DistributedContext()


@pytest.fixture
def setup(small_folder):
    # 32 px: at 16 px ResNet-18 hits the CPU bf16 fault classifier.training.precision avoids.
    hp = parse_hyperparameters({"batch_size": "6", "num_workers": "0", "image_size": "32"})
    classes = ["cat", "dog", "fox"]
    dataset = image_folders.ImageFolderDataset(small_folder, classes, eval_transform(32), "train")
    torch.manual_seed(0)
    model = create_model("resnet18", 3).to(memory_format=torch.channels_last)
    return hp, dataset, model


def _scaler():
    return torch.amp.GradScaler("cpu", enabled=False)


FP32 = StepSettings(choose_precision("fp32", CTX.device, 32))


@pytest.mark.parametrize(("precision", "clip"), [("fp32", 0.0), ("bf16", 0.0), ("bf16", 0.5)])
def test_train_epoch_and_evaluate_return_metrics(setup, precision, clip):
    hp, dataset, model = setup
    loader = make_loader(dataset, hp, CTX, train=True)
    optimizer = build_optimizer(hp, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    chosen = choose_precision(precision, CTX.device, 32, flags={"amx_bf16"})
    settings = StepSettings(chosen, clip)
    stop = StopSignal()
    result = train_one_epoch(model, loader, loss_fn, optimizer, _scaler(), CTX, settings, stop)
    assert result.samples == 18 and math.isfinite(result.loss) and 0 <= result.accuracy <= 1
    # Master weights stay fp32 under autocast.
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    evaluation = evaluate(model, make_loader(dataset, hp, CTX, train=False), loss_fn, CTX, chosen)
    assert evaluation.samples == 18 and len(evaluation.predictions) == 18
    report = confusion_report(["cat", "dog", "fox"], evaluation)
    assert sum(map(sum, report["confusion_matrix"])) == 18
    assert set(report["per_class_accuracy"]) == {"cat", "dog", "fox"}


def test_nan_loss_stops_training_with_a_reason(setup):
    hp, dataset, model = setup
    optimizer = build_optimizer(hp, model.parameters())

    def nan_loss(logits, targets):
        return (logits * math.nan).sum()

    with pytest.raises(
        TrainingDiverged, match="training loss became nan after 0 samples; lower learning_rate"
    ):
        train_one_epoch(
            model,
            make_loader(dataset, hp, CTX, train=True),
            nan_loss,
            optimizer,
            _scaler(),
            CTX,
            FP32,
            StopSignal(),
        )


def test_stop_signal_interrupts_between_steps(setup):
    hp, dataset, model = setup
    stop = StopSignal()
    stop.received = True
    result = train_one_epoch(
        model,
        make_loader(dataset, hp, CTX, train=True),
        nn.CrossEntropyLoss(),
        build_optimizer(hp, model.parameters()),
        _scaler(),
        CTX,
        FP32,
        stop,
    )
    assert result.interrupted and result.samples == 0


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_and_scheduler_builds(name):
    model = nn.Linear(2, 2)
    for scheduler in ("none", "step", "cosine"):
        hp = parse_hyperparameters({"optimizer": name, "lr_scheduler": scheduler, "epochs": "6"})
        optimizer = build_optimizer(hp, model.parameters())
        assert type(optimizer).__name__.lower() == name
        # Adam and AdamW run fused (one kernel per parameter) on the CPU as on GPUs.
        assert bool(optimizer.defaults.get("fused")) == (name in ("adam", "adamw"))
        built = build_scheduler(hp, optimizer)
        assert (built is None) == (scheduler == "none")


def test_frozen_parameters_are_left_out_of_the_optimizer():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight.requires_grad = False
    optimizer = build_optimizer(parse_hyperparameters({}), model.parameters())
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 3


def test_the_fp16_step_of_older_gpus_runs_with_its_scaler_up_to_the_device(setup):
    """fp16 autocast with a GradScaler is the GPU path (T4, V100); torch runs both on the CPU
    too, so everything but the CUDA kernels is exercised here: scale, unscale before clipping,
    step, update."""
    from classifier.training.precision import Precision

    hp, dataset, model = setup
    precision = Precision("fp16", "test", channels_last=False)
    scaler = precision.grad_scaler(CTX.device)
    assert scaler.is_enabled()
    optimizer = build_optimizer(hp, model.parameters())
    settings = StepSettings(precision, clip_grad_norm=1.0)
    loader = make_loader(dataset, hp, CTX, train=True)
    result = train_one_epoch(
        model, loader, nn.CrossEntropyLoss(), optimizer, scaler, CTX, settings, StopSignal()
    )
    assert result.samples == 18 and math.isfinite(result.loss)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert scaler.state_dict()["scale"] > 0


def test_a_checkpoint_resumes_under_another_precision_whatever_its_scaler_state(setup):
    """fp16 checkpoints carry a GradScaler state, others an empty one: each resumes under any
    precision (the weights and optimizer state are fp32 in all of them)."""
    from classifier.training.precision import Precision
    from classifier.training.program import TrainingState

    hp, _, model = setup

    def state(name: str) -> TrainingState:
        optimizer = build_optimizer(hp, model.parameters())
        precision = Precision(name, "test", channels_last=False)
        return TrainingState(
            model=model, loss_fn=nn.CrossEntropyLoss(), optimizer=optimizer, scheduler=None,
            scaler=precision.grad_scaler(CTX.device), hook=None, identity={}, step=StepSettings(precision),
        )  # fmt: skip

    fp16, fp32 = state("fp16"), state("fp32")
    fp32.restore(fp16.checkpoint(1, hp))
    fp16.restore(fp32.checkpoint(2, hp))
    assert fp16.start_epoch == 3 and fp16.scaler.is_enabled()


class _Recorder(StepObserver):
    def __init__(self):
        self.calls: list = []

    def begin_pass(self, train):
        self.calls.append(("begin", train))

    def after_forward(self, targets, logits, last_of_epoch):
        self.calls.append(("forward", len(targets), tuple(logits.shape), last_of_epoch))

    def after_step(self, step):
        self.calls.append(("step", step.samples, math.isfinite(step.loss), step.compute_seconds > 0))


def test_every_observer_sees_the_pass_and_each_step_in_order(setup):
    hp, dataset, model = setup
    first, second = _Recorder(), _Recorder()
    observers = StepObservers([first, second])
    loader = make_loader(dataset, hp, CTX, train=True)
    train_one_epoch(
        model, loader, nn.CrossEntropyLoss(), build_optimizer(hp, model.parameters()), _scaler(), CTX, FP32,
        StopSignal(), observers,
    )  # fmt: skip
    evaluate(model, make_loader(dataset, hp, CTX, train=False), nn.CrossEntropyLoss(), CTX, FP32.precision,
             observer=observers)  # fmt: skip
    steps = len(loader)
    expected = [("begin", True)]
    for index in range(steps):
        expected += [("forward", 6, (6, 3), index == steps - 1), ("step", 6, True, True)]
    expected.append(("begin", False))
    assert first.calls == second.calls == expected
