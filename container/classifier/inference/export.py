"""Exported forms of a trained model, written next to ``model.pt`` with their measured parity.

Training calls :func:`export_model` once the model is saved. It writes the OpenVINO IR and,
where NNCF is installed, an int8 IR quantized after training (calibrated on training images).
For each precision it records, in ``model_config.json`` under ``exports``, how often the top-1
class agrees with fp32 PyTorch on validation images (never the calibration images) and the
largest probability difference. The server uses a reduced precision only where that agreement
is at least ``selection.MIN_TOP1_AGREEMENT``; a model directory without exports (an older artefact) is
served by PyTorch.

    python -m classifier.inference.export MODEL_DIR --data VALID_FOLDER [--calibration TRAIN_FOLDER]

adds the exports to an existing model directory.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import logging
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from classifier.artifacts import ModelSpec, load_model, write_model_config
from classifier.constants import PrecisionName
from classifier.inference.backends import InferenceBackend, OpenVinoBackend, softmax
from classifier.inference.selection import allowed_precisions
from classifier.inference.torch_backend import TorchBackend
from classifier.preprocessing import normalize, to_pixels

logger = logging.getLogger(__name__)

OPENVINO_FILE = "model.xml"  # with model.bin beside it
OPENVINO_INT8_FILE = "model_int8.xml"
PARITY_SAMPLES = 256
PARITY_BATCH = 16
# NNCF's default subset size for post-training quantization.
CALIBRATION_SAMPLES = 300


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def nncf_available() -> bool:
    return importlib.util.find_spec("nncf") is not None


def parity(reference: InferenceBackend, candidate: InferenceBackend, images: Sequence[np.ndarray]) -> dict:
    """Top-1 agreement and max |Δ probability| of ``candidate`` against ``reference`` on pixels,
    each engine preparing them as it does when it serves."""
    agree, max_diff = 0, 0.0
    for start in range(0, len(images), PARITY_BATCH):
        chunk = np.stack(images[start : start + PARITY_BATCH])
        expected = softmax(reference.logits(chunk))
        actual = softmax(candidate.logits(chunk))
        agree += int((expected.argmax(1) == actual.argmax(1)).sum())
        max_diff = max(max_diff, float(np.abs(expected - actual).max()))
    return {
        "top1_agreement": agree / max(len(images), 1),
        "max_abs_prob_diff": max_diff,
        "samples": len(images),
    }


@contextlib.contextmanager
def _root_logger_kept():
    """openvino.convert_model sets the root logger to ERROR and puts it back only when the
    conversion succeeds (openvino/tools/ovc/convert.py, 2026.4): a failed conversion silenced
    every later INFO and WARNING of the job, its own failure included."""
    root = logging.getLogger()
    level, filters, handlers = root.level, list(root.filters), list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        root.filters, root.handlers = filters, handlers


def _export_openvino(model: torch.nn.Module, spec: ModelSpec, model_dir: Path) -> Path:
    import openvino as ov

    example = torch.zeros(1, 3, spec.image_size, spec.image_size)
    shape = [-1, 3, spec.image_size, spec.image_size]  # any batch size
    with warnings.catch_warnings(), _root_logger_kept():
        # The conversion traces with torch.jit, which warns that it is deprecated.
        warnings.simplefilter("ignore", FutureWarning)
        converted = ov.convert_model(model, example_input=example, input=shape)
    path = model_dir / OPENVINO_FILE
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return path


def _quantize_openvino(fp32_path: Path, spec: ModelSpec, calibration: Sequence[np.ndarray]) -> Path:
    """NNCF post-training int8 quantization of the IR, calibrated on pixels, normalized as the IR takes them.

    The PERFORMANCE preset (symmetric quantization) is NNCF's default for CNNs; the accuracy
    cost is measured afterwards, like every other precision, and gates the int8 model.
    """
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_path))
    dataset = nncf.Dataset([normalize(pixels, spec.mean, spec.std) for pixels in calibration])
    quantized = nncf.quantize(
        model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(calibration)
    )
    path = fp32_path.with_name(OPENVINO_INT8_FILE)
    ov.save_model(quantized, str(path), compress_to_fp16=False)
    return path


def export_model(
    model: torch.nn.Module,
    spec: ModelSpec,
    model_dir: Path,
    images: Sequence[np.ndarray],
    threads: int = 1,
    calibration: Sequence[np.ndarray] = (),
) -> ModelSpec:
    """Write the OpenVINO IR of ``model`` (CPU, eval mode) and record its parity; returns the new spec.

    ``images`` are validation images as pixels (:func:`classifier.preprocessing.to_pixels`); an
    empty sequence records no parity, so the server keeps fp32. ``calibration`` (training
    images as pixels) enables the int8 model where NNCF is installed.
    """
    if not openvino_available():
        logger.info("openvino is not installed: no exported form, the server will run PyTorch")
        return spec
    model = model.eval().cpu()
    path = _export_openvino(model, spec, model_dir)
    files = {PrecisionName.FP32: path, PrecisionName.BF16: path}
    if calibration and images and nncf_available():
        try:
            files[PrecisionName.INT8] = _quantize_openvino(path, spec, calibration)
        except Exception as error:  # noqa: BLE001 - NNCF fails in many ways; fp32/bf16 stand
            logger.warning("no int8 model (%s: %s); fp32 and bf16 are exported", type(error).__name__, error)
    elif calibration and images:
        logger.info("nncf is not installed: no int8 model")
    reference = TorchBackend(model, mean=spec.mean, std=spec.std)
    measured = {
        precision: parity(reference, OpenVinoBackend(file, precision, threads, spec.mean, spec.std), images)
        if images
        else None
        for precision, file in files.items()
    }
    export = {"file": path.name, "parity": measured}
    if PrecisionName.INT8 in files:
        export["int8_file"] = files[PrecisionName.INT8].name
    for precision, result in measured.items():
        if result is not None:
            logger.info(
                "openvino %s parity on %d validation images: top-1 agreement %.4f, max |dp| %.2g",
                precision, result["samples"], result["top1_agreement"], result["max_abs_prob_diff"],
            )  # fmt: skip
    new_spec = replace(spec, exports={**spec.exports, "openvino": export})
    write_model_config(model_dir, new_spec)
    return new_spec


def pixel_transform(spec: ModelSpec) -> functools.partial:
    """The dataset transform that gives the pixels an engine takes (see classifier.preprocessing)."""
    return functools.partial(
        to_pixels, image_size=spec.image_size, resize_size=spec.eval_resize, interpolation=spec.interpolation
    )


def sample_images(dataset, limit: int = PARITY_SAMPLES) -> list[np.ndarray]:
    """Up to ``limit`` images spread over ``dataset`` (unreadable files left out), as its transform
    gives them: pixels, with :func:`pixel_transform`."""
    step = max(1, len(dataset) // limit)
    items = (dataset[index] for index in range(0, len(dataset), step)[:limit])
    return [item[0] for item in items if isinstance(item, tuple)]


def _prepared_images(folder: Path, spec: ModelSpec, limit: int) -> list[np.ndarray]:
    from classifier.image_folders import ImageFolderDataset, find_class_names, resolve_channel

    root = resolve_channel(folder)
    dataset = ImageFolderDataset(root, find_class_names(root), pixel_transform(spec), folder.name)
    return sample_images(dataset, limit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classifier.inference.export",
        description="Add the exported inference forms (OpenVINO IR) and their parity to a model directory.",
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", type=Path, help="an image folder (class subfolders) for the parity check")
    parser.add_argument("--samples", type=int, default=PARITY_SAMPLES)
    parser.add_argument(
        "--calibration",
        type=Path,
        help="another image folder (the training images) to calibrate the int8 model on; needs --data",
    )
    args = parser.parse_args(argv)
    if args.calibration and not args.data:
        parser.error("--calibration needs --data: int8 is served only with its parity measured")
    for option, folder in (("--data", args.data), ("--calibration", args.calibration)):
        if folder is not None and not folder.is_dir():
            parser.error(f"{option} {folder} is not a folder")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not openvino_available():
        print("openvino is not installed in this environment", file=sys.stderr)
        return 2
    from classifier.artifacts import ModelArtifactError
    from classifier.image_folders import DataError

    try:
        model, spec = load_model(args.model_dir)
        images = _prepared_images(args.data, spec, args.samples) if args.data else []
        calibration = (
            _prepared_images(args.calibration, spec, CALIBRATION_SAMPLES) if args.calibration else []
        )
    except (ModelArtifactError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    spec = export_model(model, spec, args.model_dir, images, torch.get_num_threads(), calibration)
    for precision, verdict in allowed_precisions(spec, "openvino").items():
        print(f"openvino {precision}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
