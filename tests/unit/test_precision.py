"""Which precision a training step runs in, decided for machines these tests do not run on."""

from __future__ import annotations

import pytest
import torch

from classifier.hyperparameter_schema import HyperparameterValueError, parse_values
from classifier.training.hyperparameters import parse_hyperparameters
from classifier.training.precision import (
    ImageSizeError,
    PrecisionError,
    choose_precision,
    cpu_flags,
    probe_model,
)

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)
AMX = {"avx512f", "amx_tile", "amx_bf16"}
AVX512_BF16 = {"avx512f", "avx512_bf16"}
AVX2 = {"avx2", "fma"}


@pytest.mark.parametrize(
    ("flags", "size", "expected"),
    [
        (AMX, 224, ("bf16", True)),
        (AMX, 32, ("bf16", False)),
        (AVX512_BF16, 64, ("bf16", True)),
        (AVX2, 224, ("fp32", True)),
        (AVX2, 64, ("fp32", False)),
    ],
)
def test_auto_on_a_cpu_is_bf16_only_where_it_runs_natively(flags, size, expected):
    chosen = choose_precision("auto", CPU, size, flags=flags)
    assert (chosen.name, chosen.channels_last) == expected
    assert chosen.reason.startswith("auto:")
    assert not chosen.scaled


@pytest.mark.parametrize(
    ("bf16_supported", "expected", "scaled"),
    [(True, "bf16", False), (False, "fp16", True)],  # A100/H100/L4/A10G vs T4/V100
)
def test_auto_on_a_gpu_is_bf16_else_fp16_with_a_scaler(bf16_supported, expected, scaled):
    chosen = choose_precision("auto", GPU, 224, cuda_bf16=bf16_supported)
    assert (chosen.name, chosen.scaled, chosen.channels_last) == (expected, scaled, True)
    assert chosen.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[expected]


def test_what_a_device_cannot_run_is_refused_with_the_fix():
    with pytest.raises(PrecisionError, match="precision=fp16 is for GPUs"):
        choose_precision("fp16", CPU, 224, flags=AMX)
    with pytest.raises(PrecisionError, match="no native bf16.*use precision=fp16"):
        choose_precision("bf16", GPU, 224, cuda_bf16=False)


def test_asked_for_precisions_are_honoured():
    assert choose_precision("fp32", CPU, 224, flags=AMX).name == "fp32"
    assert choose_precision("bf16", CPU, 64, flags=AVX2).name == "bf16"  # emulated, with a warning
    assert choose_precision("fp16", GPU, 224, cuda_bf16=True).scaled


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_amp_is_the_older_name_of_precision():
    assert parse_hyperparameters({}).precision == "auto"
    assert parse_hyperparameters({"amp": "true"}).precision == "auto"
    assert parse_hyperparameters({"amp": "false"}).precision == "fp32"
    assert parse_hyperparameters({"precision": "BF16"}).precision == "bf16"
    with pytest.raises(HyperparameterValueError, match="amp and precision both given"):
        parse_values({"amp": "true", "precision": "fp32"})


def test_precision_is_not_part_of_the_run_a_checkpoint_belongs_to():
    fp32 = parse_hyperparameters({"precision": "fp32"}).run_identity()
    assert fp32 == parse_hyperparameters({"precision": "bf16"}).run_identity()


def test_bf16_is_not_chosen_where_the_cpu_kernels_compute_nan_gradients():
    """ResNet-18 at 16 px: layer4.0.conv1 (3x3, stride 2) sees a 1x1 input, for which torch's
    CPU bf16 kernels return non-finite weight gradients. auto falls back to fp32 and says why;
    bf16 asked for is refused; at 32 px the input is 2x2 and bf16 is safe."""
    from classifier.models import create_model

    model = create_model("resnet18", 3).train()
    unsafe = probe_model(model, 16, "resnet18")
    assert unsafe == ["layer4.0.conv1"]  # its 1x1 strided downsample is fine
    assert model.training
    chosen = choose_precision("auto", CPU, 16, unsafe, flags=AMX)
    assert chosen.name == "fp32" and "layer4.0.conv1" in chosen.reason
    with pytest.raises(PrecisionError, match="precision=bf16: at image_size=16 the input of layer4.0.conv1"):
        choose_precision("bf16", CPU, 16, unsafe, flags=AMX)
    assert probe_model(model, 32, "resnet18") == []
    assert choose_precision("auto", CPU, 32, [], flags=AMX).name == "bf16"
    assert choose_precision("auto", CPU, 16, unsafe, flags=AVX2).name == "fp32"


def test_an_image_size_too_small_for_the_architecture_names_the_key():
    from classifier.models import create_model

    with pytest.raises(ImageSizeError, match="image_size=16 is too small for model squeezenet1_1: Given"):
        probe_model(create_model("squeezenet1_1", 3), 16, "squeezenet1_1")
