"""The arithmetic a training step runs in, and the memory layout of its activations.

One rule (docs/performance.md, "Training precision"): the fastest precision the hardware runs
natively, where a parity measurement says it does not change what the model learns. bf16
autocast on CPUs with AMX or AVX512-BF16 and on GPUs that support bf16; fp16 autocast with a
gradient scaler on older GPUs; fp32 elsewhere. Only the forward pass and the loss run under
autocast: the weights, their gradients, the optimizer state and every checkpoint stay fp32,
so a checkpoint written under one precision resumes under any other.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from classifier.constants import PrecisionName
from classifier.errors import JobInputError

logger = logging.getLogger(__name__)

# /proc/cpuinfo flags of CPUs that run bf16 matrix maths natively (oneDNN uses them).
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# channels_last on the CPU, from `make bench-train`'s layout matrix (docs/performance.md,
# ResNet-18, 2 threads, 3 runs on an EPYC with AVX512-BF16): in fp32 it pays at 224 px (1.14-1.98x;
# 1.19x on a Xeon with AMX) and is a wash or a loss at 32 px (0.89-1.07x; 0.88x at 64 px on the
# Xeon); under bf16 it pays at 224 px (2.24-4.26x against 1.96-3.74x contiguous), is a wash at
# 64 px (mean 1.75x against 1.77x) and a loss at 32 px on average.
CPU_FP32_CHANNELS_LAST_MIN_SIZE = 128
CPU_BF16_CHANNELS_LAST_MIN_SIZE = 64


class PrecisionError(JobInputError):
    """The precision asked for cannot run on this device; the message says which would."""


@dataclass(frozen=True)
class Precision:
    """What a step runs in (``name``), why, and the activations' memory layout."""

    name: PrecisionName
    reason: str
    channels_last: bool

    @property
    def dtype(self) -> torch.dtype | None:
        return {PrecisionName.BF16: torch.bfloat16, PrecisionName.FP16: torch.float16}.get(self.name)

    @property
    def scaled(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range."""
        return self.name == PrecisionName.FP16

    def autocast(self, device: torch.device):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(device.type, enabled=self.scaled)

    def describe(self) -> dict:
        return {"precision": self.name, "reason": self.reason, "channels_last": self.channels_last}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def _cuda_bf16() -> bool:
    return torch.cuda.is_bf16_supported(including_emulation=False)


class ImageSizeError(JobInputError):
    """The architecture cannot take images of the size asked for."""


def probe_model(model: nn.Module, image_size: int, architecture: str) -> list[str]:
    """One fp32 forward pass of one image at ``image_size``, before training starts.

    Returns the convolutions whose bf16 weight gradient torch's CPU kernels get wrong at this
    size: a strided convolution with a kernel over 1x1 whose input is 1 pixel high or wide
    (ResNet-18's layer4.0.conv1 at 16 px). Measured with torch 2.14.1 on an EPYC with
    AVX512-BF16: non-finite weight gradients in 12-19 of 30 random batches, so the first steps
    turn the weights into NaN; 2x2 inputs and unstrided convolutions are unaffected. An
    architecture too deep for the size fails here with the key to change, instead of in the
    first step.
    """
    found: list[str] = []

    def check(name: str, module: nn.Conv2d, inputs) -> None:
        strided = max(module.stride) > 1 and max(module.kernel_size) > 1
        if strided and min(inputs[0].shape[-2:]) == 1:
            found.append(name)

    handles = [
        module.register_forward_pre_hook(functools.partial(check, name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    was_training = model.training
    image = torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device)
    try:
        with torch.no_grad():
            model.eval()(image)
    except (RuntimeError, ValueError) as error:
        raise ImageSizeError(
            f"hyperparameter image_size={image_size} is too small for model {architecture}: "
            f"{str(error).strip().splitlines()[0]}"
        ) from error
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return found


def choose_precision(
    requested: str,
    device: torch.device,
    image_size: int,
    unsafe_bf16: Iterable[str] = (),
    flags: Iterable[str] | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """The precision for ``requested`` (auto, fp32, bf16, fp16) on ``device``, with the reason.

    ``unsafe_bf16`` names the convolutions :func:`probe_model` found the CPU's bf16 kernels
    fail on: auto then runs fp32, and bf16 asked for is refused. ``flags`` (CPU feature flags)
    and ``cuda_bf16`` default to what this machine reports; tests pass them to decide for
    machines they do not run on.
    """
    if device.type == "cuda":
        native_bf16 = _cuda_bf16() if cuda_bf16 is None else cuda_bf16
        return _on_gpu(requested, native_bf16)
    present = set(cpu_flags() if flags is None else flags)
    native = [flag for flag in CPU_BF16_FLAGS if flag in present]
    chosen = _on_cpu(requested, native, image_size)
    unsafe = list(unsafe_bf16)
    if chosen.name != PrecisionName.BF16 or not unsafe:
        return chosen
    fault = (
        f"at image_size={image_size} the input of {', '.join(unsafe)} is 1 pixel wide, where torch's "
        "CPU bf16 kernels compute non-finite weight gradients"
    )
    if requested == PrecisionName.BF16:
        raise PrecisionError(f"hyperparameter precision=bf16: {fault}; use a larger image_size, or fp32")
    return Precision(PrecisionName.FP32, f"auto: {fault}", image_size >= CPU_FP32_CHANNELS_LAST_MIN_SIZE)


def _on_gpu(requested: str, native_bf16: bool) -> Precision:
    if requested == PrecisionName.FP32:
        return Precision(PrecisionName.FP32, "precision=fp32 asked for", True)
    if requested == PrecisionName.BF16 and not native_bf16:
        raise PrecisionError(
            "hyperparameter precision=bf16: this GPU has no native bf16 (compute capability < 8.0); "
            "use precision=fp16 (or auto, which picks it)"
        )
    if requested == PrecisionName.BF16 or (requested == PrecisionName.AUTO and native_bf16):
        why = "asked for" if requested == PrecisionName.BF16 else "auto: the GPU runs bf16 natively"
        return Precision(PrecisionName.BF16, f"bf16 autocast ({why})", True)
    why = "asked for" if requested == PrecisionName.FP16 else "auto: the GPU has no native bf16"
    return Precision(PrecisionName.FP16, f"fp16 autocast with a gradient scaler ({why})", True)


def _on_cpu(requested: str, native: list[str], image_size: int) -> Precision:
    fp32_layout = image_size >= CPU_FP32_CHANNELS_LAST_MIN_SIZE
    if requested == PrecisionName.FP16:
        raise PrecisionError(
            "hyperparameter precision=fp16 is for GPUs (with a gradient scaler); on a CPU use "
            "precision=bf16 or auto"
        )
    if requested == PrecisionName.FP32:
        return Precision(PrecisionName.FP32, "precision=fp32 asked for", fp32_layout)
    bf16_layout = image_size >= CPU_BF16_CHANNELS_LAST_MIN_SIZE
    if requested == PrecisionName.BF16:
        if not native:
            logger.warning(
                "precision=bf16 on a CPU without %s: bf16 runs emulated, usually slower than fp32",
                " or ".join(CPU_BF16_FLAGS),
            )
        return Precision(PrecisionName.BF16, "bf16 autocast (asked for)", bf16_layout)
    if native:
        return Precision(
            PrecisionName.BF16, f"auto: the CPU runs bf16 natively ({', '.join(native)})", bf16_layout
        )
    return Precision(
        PrecisionName.FP32,
        f"auto: the CPU has none of {', '.join(CPU_BF16_FLAGS)}, so bf16 would be emulated",
        fp32_layout,
    )
