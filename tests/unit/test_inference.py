"""Inference engines: export with parity, the choice of engine and precision, and the fallbacks."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from classifier.artifacts import ModelArtifactError, ModelSpec, load_model_spec, save_model
from classifier.constants import PrecisionName
from classifier.inference import export, selection
from classifier.inference.backends import OpenVinoBackend, softmax
from classifier.inference.torch_backend import TorchBackend
from classifier.models import create_model
from tests.helpers import write_image_folder

pytest.importorskip("openvino", reason="openvino is a runtime requirement (container/requirements.txt)")

SPEC = ModelSpec("resnet18", ("cat", "dog", "owl", "fox"), 32)


def _images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Pixels as engines take them: 32x32 RGB uint8."""
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model directory as training leaves it: weights, config and the OpenVINO exports
    (fp32 IR, int8 IR calibrated on other images than the parity ones)."""
    torch.manual_seed(0)
    model = create_model(SPEC.architecture, SPEC.num_classes).eval()
    model_dir = save_model(tmp_path_factory.mktemp("model") / "model", model.state_dict(), SPEC)
    spec = export.export_model(
        model, SPEC, model_dir, _images(24), threads=2, calibration=_images(16, seed=9)
    )
    return model, model_dir, spec


def test_export_records_parity_of_each_precision_in_model_config(exported):
    _, model_dir, spec = exported
    saved = json.loads((model_dir / "model_config.json").read_text())["exports"]["openvino"]
    assert saved == spec.exports["openvino"]
    assert (model_dir / saved["file"]).is_file() and (model_dir / "model.bin").is_file()
    assert set(saved["parity"]) == {PrecisionName.FP32, PrecisionName.BF16, PrecisionName.INT8}
    assert saved["int8_file"] == "model_int8.xml" and (model_dir / "model_int8.bin").is_file()
    fp32 = saved["parity"][PrecisionName.FP32]
    assert fp32["samples"] == 24 and fp32["top1_agreement"] == 1.0 and fp32["max_abs_prob_diff"] < 1e-4
    assert load_model_spec(model_dir) == spec


def test_openvino_fp32_gives_torch_top_k_within_the_recorded_tolerance(exported):
    model, model_dir, spec = exported
    reference, engine = (
        TorchBackend(model),
        OpenVinoBackend(model_dir / "model.xml", PrecisionName.FP32, threads=2),
    )
    images = np.stack(_images(10, seed=1))
    expected, actual = softmax(reference.logits(images)), softmax(engine.logits(images))
    tolerance = spec.exports["openvino"]["parity"][PrecisionName.FP32]["max_abs_prob_diff"]
    top3 = np.argsort(-expected, axis=1)[:, :3]
    assert np.array_equal(top3, np.argsort(-actual, axis=1)[:, :3])
    assert float(np.abs(expected - actual).max()) <= max(tolerance * 10, 1e-5)


def test_thread_counts_each_get_a_compiled_model_with_the_same_answers(exported):
    _, model_dir, _ = exported
    engine = OpenVinoBackend(model_dir / "model.xml", PrecisionName.FP32, threads=2)
    images = np.stack(_images(3, seed=2))
    two = engine.logits(images)
    engine.set_threads(1)
    assert np.allclose(engine.logits(images), two, atol=1e-5)


def test_auto_picks_openvino_and_says_why(exported):
    _, model_dir, spec = exported
    choice = selection.choose(model_dir, spec, "cpu")
    assert choice.backend == "openvino" and "fastest available" in choice.reason
    assert choice.file == model_dir / (
        "model_int8.xml" if choice.precision == PrecisionName.INT8 else "model.xml"
    )


def _with_agreement(spec: ModelSpec, **agreements: float) -> ModelSpec:
    """``spec`` with the recorded top-1 agreement of each named precision replaced."""
    parity = dict(spec.exports["openvino"]["parity"])
    for precision, agreement in agreements.items():
        parity[precision] = {"top1_agreement": agreement, "max_abs_prob_diff": 0.2, "samples": 24}
    return replace(spec, exports={"openvino": {**spec.exports["openvino"], "parity": parity}})


@pytest.fixture
def selection_warnings():
    """Warnings the selection logs, caught on its own logger: other tests configure logging."""
    logger = logging.getLogger(selection.__name__)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    previous, disabled, disabled_below = logger.level, logger.disabled, logging.root.manager.disable
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.disabled = False
    logging.disable(logging.NOTSET)
    try:
        yield records
    finally:
        logging.disable(disabled_below)
        logger.removeHandler(handler)
        logger.setLevel(previous)
        logger.disabled = disabled


@pytest.mark.parametrize("requested", ["auto", "bf16", "int8"])
def test_reduced_precisions_are_refused_when_the_recorded_agreement_is_below_the_threshold(
    exported, requested, selection_warnings
):
    _, model_dir, spec = exported
    refusing = _with_agreement(spec, bf16=0.94, int8=0.97)
    choice = selection.choose(model_dir, refusing, "cpu", precision=requested)
    assert choice.precision == PrecisionName.FP32 and choice.file == model_dir / "model.xml"
    if requested in ("auto", "int8"):
        assert "int8 refused: top-1 agreement 0.9700 < 0.99" in choice.reason
    if requested in ("auto", "bf16"):
        assert "bf16 refused: top-1 agreement 0.9400 < 0.99" in choice.reason
    warned = any("serving fp32" in record.getMessage() for record in selection_warnings)
    assert warned == (requested != "auto")


def test_the_fastest_precision_the_agreement_allows_is_served(exported, monkeypatch):
    _, model_dir, spec = exported
    monkeypatch.setattr(selection, "cpu_supports", lambda precision: True)
    both = _with_agreement(spec, bf16=0.995, int8=0.992)
    choice = selection.choose(model_dir, both, "cpu")
    assert (choice.precision, choice.file) == (PrecisionName.INT8, model_dir / "model_int8.xml")
    assert selection.choose(model_dir, both, "cpu", precision="bf16").precision == PrecisionName.BF16
    assert selection.choose(model_dir, both, "cpu", precision="fp32").precision == PrecisionName.FP32
    bf16_only = _with_agreement(spec, bf16=0.995, int8=0.98)
    choice = selection.choose(model_dir, bf16_only, "cpu")
    assert (choice.precision, choice.file) == (PrecisionName.BF16, model_dir / "model.xml")
    assert "int8 refused" in choice.reason
    unmeasured = replace(spec, exports={"openvino": {"file": "model.xml", "parity": {}}})
    assert selection.choose(model_dir, unmeasured, "cpu").precision == PrecisionName.FP32
    # An export from before int8 (no int8 model) still serves, in bf16.
    no_int8 = {key: value for key, value in both.exports["openvino"].items() if key != "int8_file"}
    choice = selection.choose(model_dir, replace(spec, exports={"openvino": no_int8}), "cpu")
    assert choice.precision == PrecisionName.BF16 and "no int8 model" in choice.reason


def test_a_cpu_without_the_instructions_keeps_fp32(exported, monkeypatch):
    _, model_dir, spec = exported
    monkeypatch.setattr(selection, "cpu_supports", lambda precision: False)
    choice = selection.choose(model_dir, _with_agreement(spec, bf16=0.995, int8=0.995), "cpu")
    assert choice.precision == PrecisionName.FP32 and "this CPU has no int8 support" in choice.reason


def _adjusted(agreeing: float, samples: int) -> tuple[float, float]:
    """Agresti-Caffo: the agreement with one agreeing and one disagreeing image added, and
    its variance; sound even for an agreement of 1.0 measured on few images."""
    rate = (agreeing + 1) / (samples + 2)
    return rate, rate * (1 - rate) / (samples + 2)


def test_each_precision_answers_like_torch_within_its_recorded_agreement(exported):
    """On images the export never saw, each precision agrees with PyTorch's top-1 as often as
    its record says, within three standard errors of the difference of the two measurements."""
    model, model_dir, spec = exported
    reference = TorchBackend(model)
    images = np.stack(_images(192, seed=7))  # neither the parity (seed 0) nor calibration (seed 9) images
    expected = reference.logits(images).argmax(1)
    for precision, file in (
        (PrecisionName.FP32, "model.xml"),
        (PrecisionName.BF16, "model.xml"),
        (PrecisionName.INT8, "model_int8.xml"),
    ):
        engine = OpenVinoBackend(model_dir / file, precision, threads=2)
        agreeing = int((engine.logits(images).argmax(1) == expected).sum())
        record = spec.exports["openvino"]["parity"][precision]
        samples = record["samples"]
        recorded, recorded_variance = _adjusted(record["top1_agreement"] * samples, samples)
        measured, measured_variance = _adjusted(agreeing, len(images))
        margin = 3 * (recorded_variance + measured_variance) ** 0.5
        assert abs(measured - recorded) <= margin, (precision, agreeing, record, margin)


def test_a_missing_engine_falls_back_to_torch_and_a_forced_one_stops_the_server(exported, monkeypatch):
    _, model_dir, spec = exported
    monkeypatch.setattr(selection, "installed", lambda module: False)
    choice = selection.choose(model_dir, spec, "cpu")
    assert choice.backend == "torch" and "openvino: not installed" in choice.reason
    with pytest.raises(ModelArtifactError, match="openvino was asked for but is not installed"):
        selection.choose(model_dir, spec, "cpu", backend="openvino")


def test_an_old_model_without_exports_is_served_by_torch(tmp_path):
    model_dir = save_model(tmp_path / "model", create_model("resnet18", 4).state_dict(), SPEC)
    choice = selection.choose(model_dir, SPEC, "cpu")
    assert choice.backend == "torch" and "no export in the model" in choice.reason
    with pytest.raises(ModelArtifactError, match="holds no openvino export"):
        selection.choose(model_dir, SPEC, "cpu", backend="openvino")


def test_without_torch_a_model_without_an_openvino_export_is_refused_naming_the_hyperparameter(
    tmp_path, monkeypatch
):
    """The serving image has no torch: such a model stops the server at start-up, and a
    multi-model load, with what to do about it."""
    model_dir = save_model(tmp_path / "model", create_model("resnet18", 4).state_dict(), SPEC)
    monkeypatch.setattr(selection, "installed", lambda module: module != "torch")
    with pytest.raises(ModelArtifactError) as refused:
        selection.choose(model_dir, SPEC, "cpu")
    message = str(refused.value)
    assert str(model_dir) in message and "has no OpenVINO export" in message
    assert "inference_export=openvino" in message and "sagemaker-image-classifier" in message
    with pytest.raises(
        ModelArtifactError, match="CLASSIFIER_INFERENCE_BACKEND=torch, but this image has no PyTorch"
    ):
        selection.choose(model_dir, SPEC, "cpu", backend="torch")


def test_train_in_the_serving_image_exits_saying_which_image_trains(monkeypatch):
    from classifier import constants, entrypoints

    monkeypatch.setenv(constants.IMAGE_KIND_ENV, constants.SERVING_IMAGE_KIND)
    with pytest.raises(SystemExit) as stopped:
        entrypoints.train("/opt/program/train")
    assert "this is the serving image" in str(stopped.value.code)


def test_a_gpu_runs_torch(exported):
    _, model_dir, spec = exported
    assert selection.choose(model_dir, spec, "cuda:0").backend == "torch"


def test_the_server_predicts_the_same_top_k_on_openvino_as_on_torch(exported):
    import io

    from PIL import Image

    from classifier.serving.predictor import Predictor

    model, model_dir, spec = exported
    # fp32: the reduced precisions answer within their recorded agreement (tested above).
    served = Predictor.load(model_dir, "cpu", precision=PrecisionName.FP32, threads=2, max_batch_size=4)
    reference = Predictor(model, spec, fuse=False).start()
    try:
        assert (served.backend_name, served.precision) == ("openvino", PrecisionName.FP32)
        buffer = io.BytesIO()
        Image.effect_mandelbrot((48, 40), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(buffer, "PNG")
        pixels = served.prepare(buffer.getvalue())
        expected, actual = reference.predict([pixels], 3)[0], served.predict([pixels], 3)[0]
        assert [p["label"] for p in actual] == [p["label"] for p in expected]
    finally:
        served.close()
        reference.close()


def test_the_export_command_adds_int8_to_an_old_model_and_names_bad_input(tmp_path, capsys):
    model_dir = save_model(tmp_path / "model", create_model("resnet18", 4).state_dict(), SPEC)
    classes = dict.fromkeys(SPEC.class_names, 3)
    valid = write_image_folder(tmp_path / "valid", classes, size=(40, 40))
    train = write_image_folder(tmp_path / "train", classes, size=(40, 40))

    assert export.main([str(model_dir), "--data", str(valid), "--calibration", str(train)]) == 0
    printed = capsys.readouterr().out
    assert "openvino int8: " in printed and "openvino bf16: " in printed
    assert load_model_spec(model_dir).exports["openvino"]["parity"]["int8"]["samples"] == 12

    assert export.main([str(tmp_path / "nothing"), "--data", str(valid)]) == 2
    assert "no model_config.json" in capsys.readouterr().err
    for argv in (["--data", str(tmp_path / "missing")], ["--calibration", str(train)]):
        with pytest.raises(SystemExit) as exited:
            export.main([str(model_dir), *argv])
        assert exited.value.code == 2
    assert "is not a folder" in capsys.readouterr().err


class _Untraceable(torch.nn.Module):
    """A network that refuses to be traced, as one carrying the Debugger hook's forward hooks does."""

    def forward(self, images):
        if torch.jit.is_tracing():
            raise RuntimeError("this network cannot be traced")
        return images.mean(dim=(2, 3))


def test_a_failed_conversion_leaves_the_jobs_logging_as_it_was(tmp_path, caplog):
    """openvino.convert_model sets the root logger to ERROR and restores it only on success: a
    job whose export failed used to lose every later INFO and WARNING line, that failure's too."""
    root = logging.getLogger()
    before = root.level, list(root.handlers)
    with pytest.raises(Exception):  # noqa: B017 - OpenVINO wraps the tracing error its own way
        export.export_model(_Untraceable(), SPEC, tmp_path, _images(2))
    assert (root.level, list(root.handlers)) == before
    with caplog.at_level(logging.INFO):
        logging.getLogger("classifier.training.program").info("still heard")
    assert "still heard" in caplog.text
