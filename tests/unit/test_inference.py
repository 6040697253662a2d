"""Inference engines: export with parity, the choice of engine and precision, and the fallbacks."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import torch

from classifier.artifacts import ModelArtifactError, ModelSpec, load_model_spec, save_model
from classifier.inference import export, selection
from classifier.inference.backends import BF16, FP32, OpenVinoBackend, TorchBackend
from classifier.models import create_model

pytest.importorskip("openvino", reason="openvino is a runtime requirement (container/requirements.txt)")

SPEC = ModelSpec("resnet18", ("cat", "dog", "owl", "fox"), 32)


def _images(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 32, 32, generator=generator) for _ in range(count)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model directory as training leaves it: weights, config and the OpenVINO export."""
    torch.manual_seed(0)
    model = create_model(SPEC.architecture, SPEC.num_classes).eval()
    model_dir = save_model(tmp_path_factory.mktemp("model") / "model", model.state_dict(), SPEC)
    spec = export.export_model(model, SPEC, model_dir, _images(24), threads=2)
    return model, model_dir, spec


def test_export_records_parity_of_each_precision_in_model_config(exported):
    _, model_dir, spec = exported
    saved = json.loads((model_dir / "model_config.json").read_text())["exports"]["openvino"]
    assert saved == spec.exports["openvino"]
    assert (model_dir / saved["file"]).is_file() and (model_dir / "model.bin").is_file()
    assert set(saved["parity"]) == {FP32, BF16}
    fp32 = saved["parity"][FP32]
    assert fp32["samples"] == 24 and fp32["top1_agreement"] == 1.0 and fp32["max_abs_prob_diff"] < 1e-4
    assert load_model_spec(model_dir) == spec


def test_openvino_fp32_gives_torch_top_k_within_the_recorded_tolerance(exported):
    model, model_dir, spec = exported
    reference, engine = TorchBackend(model), OpenVinoBackend(model_dir / "model.xml", FP32, threads=2)
    images = _images(10, seed=1)
    expected = torch.softmax(reference.logits(images), dim=1)
    actual = torch.softmax(engine.logits(images), dim=1)
    tolerance = spec.exports["openvino"]["parity"][FP32]["max_abs_prob_diff"]
    assert torch.equal(expected.topk(3).indices, actual.topk(3).indices)
    assert float((expected - actual).abs().max()) <= max(tolerance * 10, 1e-5)


def test_thread_counts_each_get_a_compiled_model_with_the_same_answers(exported):
    _, model_dir, _ = exported
    engine = OpenVinoBackend(model_dir / "model.xml", FP32, threads=2)
    images = _images(3, seed=2)
    two = engine.logits(images)
    engine.set_threads(1)
    assert torch.allclose(engine.logits(images), two, atol=1e-5)


def test_auto_picks_openvino_and_says_why(exported):
    _, model_dir, spec = exported
    choice = selection.choose(model_dir, spec, "cpu")
    assert choice.backend == "openvino" and choice.file == model_dir / "model.xml"
    assert "fastest available" in choice.reason


def _with_bf16_agreement(spec: ModelSpec, agreement: float) -> ModelSpec:
    bf16 = {"top1_agreement": agreement, "max_abs_prob_diff": 0.2}
    parity = {**spec.exports["openvino"]["parity"], BF16: bf16}
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


@pytest.mark.parametrize("requested", ["auto", "bf16"])
def test_bf16_is_refused_when_the_recorded_agreement_is_below_the_threshold(
    exported, requested, selection_warnings
):
    _, model_dir, spec = exported
    choice = selection.choose(model_dir, _with_bf16_agreement(spec, 0.94), "cpu", precision=requested)
    assert choice.precision == FP32
    assert "refused: top-1 agreement 0.9400 < 0.99" in choice.reason
    warned = any("serving fp32" in record.getMessage() for record in selection_warnings)
    assert warned == (requested == "bf16")


def test_bf16_is_used_only_where_the_agreement_allows_it(exported, monkeypatch):
    _, model_dir, spec = exported
    monkeypatch.setattr(selection, "_cpu_supports_bf16", lambda: True)
    agreeing = _with_bf16_agreement(spec, 0.995)
    assert selection.choose(model_dir, agreeing, "cpu").precision == BF16
    assert selection.choose(model_dir, agreeing, "cpu", precision="fp32").precision == FP32
    unmeasured = replace(spec, exports={"openvino": {"file": "model.xml", "parity": {}}})
    assert selection.choose(model_dir, unmeasured, "cpu").precision == FP32


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


def test_a_gpu_runs_torch(exported):
    _, model_dir, spec = exported
    assert selection.choose(model_dir, spec, "cuda:0").backend == "torch"


def test_the_server_predicts_the_same_top_k_on_openvino_as_on_torch(exported):
    import io

    from PIL import Image

    from classifier.serving.predictor import Predictor

    model, model_dir, spec = exported
    served = Predictor.load(model_dir, "cpu", threads=2, max_batch_size=4)
    reference = Predictor(model, spec, fuse=False).start()
    try:
        assert (served.backend_name, served.precision) == ("openvino", FP32) or served.precision == BF16
        buffer = io.BytesIO()
        Image.effect_mandelbrot((48, 40), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(buffer, "PNG")
        tensor = served.prepare(buffer.getvalue())
        expected, actual = reference.predict([tensor], 3)[0], served.predict([tensor], 3)[0]
        assert [p["label"] for p in actual] == [p["label"] for p in expected]
    finally:
        served.close()
        reference.close()
