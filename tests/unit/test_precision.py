"""Which precision a training step runs in, decided for machines these tests do not run on."""

from __future__ import annotations

import pytest
import torch

from classifier.hyperparameter_schema import HyperparameterValueError, parse_values
from classifier.training.hyperparameters import parse_hyperparameters
from classifier.training.precision import PrecisionError, choose_precision, cpu_flags

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)
AMX = {"avx512f", "amx_tile", "amx_bf16"}
AVX512_BF16 = {"avx512f", "avx512_bf16"}
AVX2 = {"avx2", "fma"}


@pytest.mark.parametrize(
    ("flags", "size", "expected"),
    [
        (AMX, 224, ("bf16", True)),
        (AMX, 32, ("bf16", True)),
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
