"""Which engine and precision a server runs, and why; the choice is logged at start-up.

Measured on a 2-core Xeon with AMX, ResNet-18 (see docs/performance.md): OpenVINO f32 runs
faster than eager PyTorch at batch 1, bf16 about twice as fast again and int8 about twice bf16,
so on an x86 CPU the order is OpenVINO, then PyTorch, and the precision is
the fastest whose measured agreement with fp32 passed (int8, then bf16, then fp32). A GPU runs
PyTorch.
``CLASSIFIER_INFERENCE_BACKEND`` and ``CLASSIFIER_INFERENCE_PRECISION`` override the choice;
a forced backend that cannot run stops the server rather than quietly serving another.
"""

from __future__ import annotations

import importlib.util
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

from classifier import constants
from classifier.artifacts import ModelArtifactError, ModelSpec
from classifier.constants import PrecisionName

logger = logging.getLogger(__name__)

AUTO, TORCH, OPENVINO = constants.INFERENCE_BACKENDS
X86_MACHINES = ("x86_64", "amd64", "i686")
# A reduced precision is served only where its top-1 class agreed with fp32 PyTorch this often
# on the validation images the export measured (classifier.inference.export).
MIN_TOP1_AGREEMENT = 0.99
REDUCED_PRECISIONS = (PrecisionName.BF16, PrecisionName.INT8)


@dataclass(frozen=True)
class Choice:
    backend: str
    precision: PrecisionName
    reason: str
    file: Path | None = None


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _exported_file(model_dir: Path, spec: ModelSpec, backend: str, key: str = "file") -> Path | None:
    name = spec.exports.get(backend, {}).get(key)
    path = model_dir / name if name else None
    return path if path is not None and path.is_file() else None


# CPU flags (Linux /proc/cpuinfo) of int8 dot-product instructions. OpenVINO lists INT8 among
# the CPU plugin's OPTIMIZATION_CAPABILITIES on every CPU, so it cannot tell; without these, u8 x s8
# products can saturate and the parity measured on the training host may not hold.
INT8_CPU_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def allowed_precisions(spec: ModelSpec, backend: str) -> dict[PrecisionName, str]:
    """Each precision of ``backend`` with why it may or may not be served."""
    measured = spec.exports.get(backend, {}).get("parity", {})
    verdicts = {PrecisionName.FP32: "fp32 is the reference precision"}
    for precision in REDUCED_PRECISIONS:
        result = measured.get(precision)
        if result is None:
            verdicts[precision] = f"refused: no {precision} parity was measured for this model"
            continue
        agreement = result["top1_agreement"]
        if agreement >= MIN_TOP1_AGREEMENT:
            verdicts[precision] = f"allowed: top-1 agreement {agreement:.4f} >= {MIN_TOP1_AGREEMENT}"
        else:
            verdicts[precision] = f"refused: top-1 agreement {agreement:.4f} < {MIN_TOP1_AGREEMENT}"
    return verdicts


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    lines = (line for line in text.splitlines() if line.startswith("flags") and ":" in line)
    return {flag for line in lines for flag in line.split(":", 1)[1].split()}


def cpu_supports(precision: PrecisionName) -> bool:
    """Whether this CPU has fast instructions for ``precision``: VNNI or AMX for int8; for bf16
    what OpenVINO reports (AMX, AVX512-BF16)."""
    if precision == PrecisionName.INT8:
        return bool(INT8_CPU_FLAGS & _cpu_flags())
    import openvino as ov

    return precision.upper() in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _precision(
    model_dir: Path, spec: ModelSpec, backend: str, requested: PrecisionName
) -> tuple[PrecisionName, str]:
    if backend != OPENVINO or requested == PrecisionName.FP32:
        return PrecisionName.FP32, "fp32"
    verdicts = allowed_precisions(spec, backend)
    reasons = []
    for precision in (
        (PrecisionName.INT8, PrecisionName.BF16) if requested == PrecisionName.AUTO else (requested,)
    ):
        verdict = verdicts[precision]
        if precision == PrecisionName.INT8 and _exported_file(model_dir, spec, backend, "int8_file") is None:
            reasons.append("int8: no int8 model in the export")
        elif not verdict.startswith("allowed"):
            reasons.append(f"{precision} {verdict}")
        elif not cpu_supports(precision):
            reasons.append(f"this CPU has no {precision} support")
        else:
            return precision, "; ".join([*reasons, f"{precision} {verdict}"])
    if requested != PrecisionName.AUTO:
        logger.warning("%s; serving fp32", "; ".join(reasons))
    return PrecisionName.FP32, "; ".join(reasons)


def _forced(backend: str, model_dir: Path, spec: ModelSpec, device: str) -> Path | None:
    if backend == TORCH:
        require_engine(model_dir, spec, TORCH)
        return None
    if device != "cpu":
        raise ModelArtifactError(f"inference backend {backend} runs on the CPU only, not on {device}")
    if not installed(backend):
        raise ModelArtifactError(f"inference backend {backend} was asked for but is not installed")
    path = _exported_file(model_dir, spec, backend)
    if path is None:
        raise ModelArtifactError(
            f"inference backend {backend} was asked for but {model_dir} holds no {backend} export; "
            "retrain, or run python -m classifier.inference.export MODEL_DIR --data VALID_FOLDER "
            "--calibration TRAIN_FOLDER"
        )
    return path


def require_engine(model_dir: Path, spec: ModelSpec, backend: str = AUTO) -> None:
    """Refuse, before anything loads, a model that no installed engine can run: in the serving
    image (no PyTorch), a model without an OpenVINO export, or PyTorch asked for."""
    if backend == TORCH and not installed(TORCH):
        raise ModelArtifactError(
            f"{constants.INFERENCE_BACKEND_ENV}=torch, but this image has no PyTorch (the serving "
            f"image runs OpenVINO only): leave the backend on auto, or serve with the full image "
            f"({constants.FULL_IMAGE_NAME})"
        )
    if installed(TORCH) or _exported_file(model_dir, spec, OPENVINO) is not None:
        return
    raise ModelArtifactError(
        f"the model in {model_dir} ({spec.architecture}, {spec.num_classes} classes) has no OpenVINO "
        f"export, and this image has no PyTorch to run it: train it with the hyperparameter "
        f"inference_export=openvino (the default) so that model.tar.gz holds model.xml, or add one with "
        f"`python -m classifier.inference.export MODEL_DIR` in the full image ({constants.FULL_IMAGE_NAME}), "
        "or serve this model with the full image"
    )


def _automatic(model_dir: Path, spec: ModelSpec, device: str) -> tuple[str, Path | None, str]:
    require_engine(model_dir, spec)
    if device != "cpu":
        return TORCH, None, f"{device} runs PyTorch"
    if platform.machine().lower() not in X86_MACHINES:
        return TORCH, None, f"OpenVINO's int8/bf16 paths are measured on x86 only, not {platform.machine()}"
    path = _exported_file(model_dir, spec, OPENVINO)
    if installed(OPENVINO) and path is not None:
        return OPENVINO, path, f"fastest available on this {platform.machine()} CPU"
    return TORCH, None, f"{OPENVINO}: {'no export in the model' if installed(OPENVINO) else 'not installed'}"


def choose(
    model_dir: Path,
    spec: ModelSpec,
    device: str,
    backend: str = AUTO,
    precision: PrecisionName = PrecisionName.AUTO,
) -> Choice:
    if backend == AUTO:
        backend, path, reason = _automatic(model_dir, spec, device)
    else:
        path, reason = _forced(backend, model_dir, spec, device), "asked for"
    chosen_precision, why = _precision(model_dir, spec, backend, precision)
    if chosen_precision == PrecisionName.INT8:
        path = _exported_file(model_dir, spec, backend, "int8_file")
    return Choice(backend, chosen_precision, f"{reason}; {why}", path)
