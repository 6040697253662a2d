"""The hosting contract through Flask's test client, on a real (tiny) model."""

from __future__ import annotations

import base64
import io
import json
import logging
import struct
import zlib

import pytest
import torch
from PIL import Image

from classifier.serving.app import create_app
from classifier.serving.content_types import records_per_chunk
from classifier.serving.predictor import Predictor
from classifier.transforms import eval_transform, to_rgb

from .conftest import CLASS_NAMES, encode, photo, settings_for

JPEG = {"Content-Type": "image/jpeg"}


def expected_probabilities(model, predictor: Predictor, image: Image.Image) -> torch.Tensor:
    """What the trained model says through the shared eval transform, with no server."""
    spec = predictor.spec
    tensor = eval_transform(spec.image_size, spec.mean, spec.std)(to_rgb(image)).unsqueeze(0)
    with torch.inference_mode():
        return torch.softmax(model(tensor), dim=1)[0]


def assert_top_k(predictions: list[dict], k: int) -> None:
    assert len(predictions) == k
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    for prediction in predictions:
        assert prediction["label"] == CLASS_NAMES[prediction["index"]]
        assert 0.0 <= prediction["probability"] <= 1.0


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A 100-byte PNG that claims a huge size; decoding it would allocate width*height pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + _png_chunk(b"IEND", b"")
    )


class TestPing:
    def test_ready_model_answers_200(self, client):
        response = client.get("/ping")
        assert response.status_code == 200
        assert response.json == {"status": "healthy"}

    def test_model_not_warmed_up_answers_503(self, predictor, settings):
        cold = Predictor(predictor.model, predictor.spec).start()
        try:
            response = create_app(cold, settings).test_client().get("/ping")
        finally:
            cold.close()
        assert response.status_code == 503
        assert "error" in response.json

    def test_stopped_batcher_answers_503(self, predictor, settings):
        stopped = Predictor(predictor.model, predictor.spec).start()
        stopped.warm_up()
        stopped.close()
        assert create_app(stopped, settings).test_client().get("/ping").status_code == 503


class TestImageContentTypes:
    @pytest.mark.parametrize("content_type", ["image/jpeg", "application/x-image"])
    def test_jpeg(self, client, predictor, reference_model, content_type):
        image = photo(seed=1)
        body = encode(image, "JPEG", quality=95)
        response = client.post("/invocations", data=body, headers={"Content-Type": content_type})
        assert response.status_code == 200, response.json
        assert response.mimetype == "application/json"
        predictions = response.json["predictions"]
        assert_top_k(predictions, len(CLASS_NAMES))  # default 5, capped at 3 classes
        expected = expected_probabilities(reference_model, predictor, Image.open(io.BytesIO(body)))
        assert predictions[0]["index"] == int(expected.argmax())
        assert predictions[0]["probability"] == pytest.approx(float(expected.max()), abs=1e-5)

    def test_png_matches_the_shared_eval_transform_exactly(self, client, predictor, reference_model):
        image = photo(seed=2)
        response = client.post(
            "/invocations", data=encode(image, "PNG"), headers={"Content-Type": "image/png"}
        )
        expected = expected_probabilities(reference_model, predictor, image)
        got = {p["index"]: p["probability"] for p in response.json["predictions"]}
        assert got == pytest.approx({i: float(expected[i]) for i in got}, abs=1e-5)

    @pytest.mark.parametrize(
        ("fmt", "mode"),
        [
            ("BMP", "RGB"),
            ("TIFF", "RGB"),
            ("WEBP", "RGB"),
            ("GIF", "P"),
            ("PNG", "L"),
            ("PNG", "RGBA"),
            ("PNG", "I;16"),
            ("JPEG", "CMYK"),
            ("TIFF", "LA"),
        ],
    )
    def test_any_format_and_mode_pillow_reads(self, client, fmt, mode):
        image = photo(seed=3).convert(mode if mode != "I;16" else "L")
        if mode == "I;16":
            image = image.convert("I").point(lambda v: v * 256).convert("I;16")
        response = client.post(
            "/invocations", data=encode(image, fmt), headers={"Content-Type": "application/x-image"}
        )
        assert response.status_code == 200, response.json
        assert_top_k(response.json["predictions"], 3)


class TestTopK:
    @pytest.mark.parametrize(
        ("attributes", "k"),
        [("top_k=2", 2), ("top_k=1", 1), ("trace=abc, top_k=2", 2), ("x=1;top_k=1", 1),
         ("top_k=99", 3), ("other=1", 3)],
    )  # fmt: skip
    def test_custom_attributes_set_k(self, client, jpeg_bytes, attributes, k):
        headers = {**JPEG, "X-Amzn-SageMaker-Custom-Attributes": attributes}
        response = client.post("/invocations", data=jpeg_bytes, headers=headers)
        assert response.status_code == 200
        assert_top_k(response.json["predictions"], k)

    @pytest.mark.parametrize("attributes", ["top_k=0", "top_k=-1", "top_k=abc", "top_k=", "top_k"])
    def test_bad_top_k_is_400(self, client, jpeg_bytes, attributes):
        headers = {**JPEG, "X-Amzn-SageMaker-Custom-Attributes": attributes}
        response = client.post("/invocations", data=jpeg_bytes, headers=headers)
        assert response.status_code == 400
        assert "top_k" in response.json["error"]


class TestJsonBatch:
    def test_one_list_per_instance_in_order(self, client):
        images = [encode(photo(seed=seed), "PNG") for seed in (10, 11, 12)]
        singles = [
            client.post("/invocations", data=body, headers={"Content-Type": "image/png"}).json
            for body in images
        ]
        response = client.post(
            "/invocations",
            json={"instances": [base64.b64encode(body).decode() for body in images]},
            headers={"X-Amzn-SageMaker-Custom-Attributes": "top_k=2"},
        )
        assert response.status_code == 200
        batch = response.json["predictions"]
        assert len(batch) == 3
        for got, single in zip(batch, singles, strict=True):
            assert_top_k(got, 2)
            assert [p["index"] for p in got] == [p["index"] for p in single["predictions"][:2]]
            assert [p["probability"] for p in got] == pytest.approx(
                [p["probability"] for p in single["predictions"][:2]], abs=1e-5
            )

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{not json", "not valid JSON"),
            (b"\xff\xfe", "not valid JSON"),
            (b"[1, 2]", "instances"),
            (b'{"inputs": []}', "instances"),
            (b'{"instances": []}', "instances"),
            (b'{"instances": "abc"}', "instances"),
            (b'{"instances": [42]}', "instances[0] is not a base64 string"),
            (b'{"instances": ["@@not-base64@@"]}', "instances[0] is not valid base64"),
        ],
    )
    def test_bad_json_is_400(self, client, body, message):
        response = client.post("/invocations", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert message in response.json["error"]

    def test_large_batches_run_in_chunks_and_keep_their_order(self, client, predictor, reference_model):
        images = [encode(photo(24, 24, seed=seed), "PNG") for seed in range(40)]
        assert len(images) > 4 * predictor.max_batch_size
        response = client.post(
            "/invocations",
            json={"instances": [base64.b64encode(body).decode() for body in images]},
            headers={"X-Amzn-SageMaker-Custom-Attributes": "top_k=1"},
        )
        assert response.status_code == 200
        got = [answer[0]["probability"] for answer in response.json["predictions"]]
        decoded = [Image.open(io.BytesIO(body)) for body in images]
        expected = [
            float(expected_probabilities(reference_model, predictor, image).max()) for image in decoded
        ]
        assert got == pytest.approx(expected, abs=1e-5)

    def test_undecodable_instance_is_named(self, client, jpeg_bytes):
        instances = [base64.b64encode(jpeg_bytes).decode(), base64.b64encode(b"hello").decode()]
        response = client.post("/invocations", json={"instances": instances})
        assert response.status_code == 400
        assert response.json["error"].startswith("instances[1]:")


class TestErrors:
    @pytest.mark.parametrize("content_type", ["text/plain", "image/gif", "application/octet-stream"])
    def test_unsupported_content_type_is_415(self, client, jpeg_bytes, content_type):
        response = client.post("/invocations", data=jpeg_bytes, headers={"Content-Type": content_type})
        assert response.status_code == 415
        assert "image/jpeg" in response.json["error"]

    def test_missing_content_type_is_415(self, client, jpeg_bytes):
        assert client.post("/invocations", data=jpeg_bytes).status_code == 415

    @pytest.mark.parametrize(
        "accept", [None, "application/json", "*/*", "application/*", "text/html, */*;q=0.1"]
    )
    def test_json_compatible_accept_is_served(self, client, jpeg_bytes, accept):
        headers = {**JPEG, **({"Accept": accept} if accept else {})}
        assert client.post("/invocations", data=jpeg_bytes, headers=headers).status_code == 200

    @pytest.mark.parametrize("accept", ["text/csv", "image/png", "application/json;q=0"])
    def test_unsupported_accept_is_406(self, client, jpeg_bytes, accept):
        response = client.post("/invocations", data=jpeg_bytes, headers={**JPEG, "Accept": accept})
        assert response.status_code == 406
        assert "application/json" in response.json["error"]

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"", "empty"),
            (b"this is not an image", "not an image"),
            (b"\xff\xd8\xff\xe0" + b"\x00" * 40, ""),
        ],
    )
    def test_undecodable_is_400(self, client, body, message):
        response = client.post("/invocations", data=body, headers=JPEG)
        assert response.status_code == 400
        assert message in response.json["error"]

    def test_truncated_image_is_400(self, client):
        body = encode(photo(200, 150, seed=5), "JPEG", quality=95)
        response = client.post("/invocations", data=body[: len(body) // 2], headers=JPEG)
        assert response.status_code == 400
        assert "truncated" in response.json["error"]

    def test_truncated_png_is_400(self, client):
        body = encode(photo(200, 150, seed=6), "PNG")
        response = client.post(
            "/invocations", data=body[: len(body) // 2], headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 400

    # Over Pillow's limit (its warning, made an error) and over twice it (its own error).
    @pytest.mark.parametrize("side", [10_000, 100_000])
    @pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
    def test_decompression_bomb_is_400_before_decoding(self, client, side):
        response = client.post("/invocations", data=png_bomb(side, side), headers=JPEG)
        assert response.status_code == 400
        assert "decompression bomb" in response.json["error"]

    def test_decompression_bomb_limit_is_configurable(self, predictor, base_dir):
        settings = settings_for(base_dir, CLASSIFIER_MAX_IMAGE_PIXELS=5_000)
        small = Predictor(predictor.model, predictor.spec, max_image_pixels=settings.max_image_pixels).start()
        try:
            client = create_app(small, settings).test_client()
            body = encode(photo(100, 100), "PNG")  # 10,000 pixels
            response = client.post("/invocations", data=body, headers=JPEG)
            assert response.status_code == 400
            assert "decompression bomb" in response.json["error"]
            ok = client.post("/invocations", data=encode(photo(60, 60), "PNG"), headers=JPEG)
            assert ok.status_code == 200
        finally:
            small.close()

    def test_extreme_aspect_ratio_is_400(self, client):
        # 1 x 100,000 pixels is small, but resizing its short side to 37 makes 137M pixels.
        strip = Image.new("RGB", (1, 100_000), (10, 20, 30))
        response = client.post("/invocations", data=encode(strip, "PNG"), headers=JPEG)
        assert response.status_code == 400
        assert "aspect ratio" in response.json["error"]

    def test_over_limit_content_length_is_413_unread(self, predictor, base_dir, jpeg_bytes):
        settings = settings_for(base_dir, SAGEMAKER_MAX_PAYLOAD_IN_MB=0.001)  # 1048 bytes
        client = create_app(predictor, settings).test_client()
        response = client.post("/invocations", data=jpeg_bytes, headers=JPEG)
        assert response.status_code == 413
        assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in response.json["error"]

    def test_over_limit_body_without_content_length_is_413(self, predictor, base_dir, jpeg_bytes):
        settings = settings_for(base_dir, SAGEMAKER_MAX_PAYLOAD_IN_MB=0.001)
        client = create_app(predictor, settings).test_client()
        response = client.post(
            "/invocations",
            input_stream=io.BytesIO(jpeg_bytes),
            headers={**JPEG, "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.status_code == 413
        assert response.json["error"]

    def test_default_payload_limit_is_6_mb(self, client):
        body = b"\0" * (6 * 1024 * 1024 + 1)
        assert client.post("/invocations", data=body, headers=JPEG).status_code == 413

    def test_unknown_route_and_method_are_json(self, client):
        assert client.get("/nope").json["error"]
        response = client.get("/invocations")
        assert response.status_code == 405
        assert response.json["error"]

    def test_internal_error_is_500_with_a_logged_request_id(self, predictor, settings, jpeg_bytes, caplog):
        class Broken(torch.nn.Module):
            def forward(self, batch):
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

        broken = Predictor(Broken(), predictor.spec).start()
        try:
            client = create_app(broken, settings).test_client()
            with caplog.at_level(logging.INFO):
                response = client.post("/invocations", data=jpeg_bytes, headers=JPEG)
        finally:
            broken.close()
        assert response.status_code == 500
        request_id = response.json["request_id"]
        assert response.headers["X-Request-Id"] == request_id
        assert "illegal memory access" not in response.json["error"]
        assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)


class TestExecutionParametersAndLogging:
    def test_a_callers_request_id_is_kept_when_harmless(self, client):
        assert client.get("/ping", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
        forged = client.get("/ping", headers={"X-Request-Id": "x id=forged " * 20})
        assert "forged" not in forged.headers["X-Request-Id"]

    def test_execution_parameters(self, client, settings):
        """Enough concurrent requests to fill every worker's batches, within the 100 MB rule."""
        assert client.get("/execution-parameters").json == {
            "MaxConcurrentTransforms": min(settings.workers * settings.max_batch_size, 100 // 6),
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": 6,
        }

    def test_execution_parameters_follow_the_environment(self, predictor, base_dir):
        settings = settings_for(
            base_dir,
            SAGEMAKER_MODEL_SERVER_WORKERS=3,
            SAGEMAKER_BATCH_STRATEGY="SingleRecord",
            SAGEMAKER_MAX_PAYLOAD_IN_MB=20,
        )
        response = create_app(predictor, settings).test_client().get("/execution-parameters")
        # 3 workers x 8 images a batch would be 24 requests; 24 x 20 MB passes AWS's 100 MB.
        assert response.json == {
            "MaxConcurrentTransforms": 5,
            "BatchStrategy": "SINGLE_RECORD",
            "MaxPayloadInMB": 20,
        }
        small = settings_for(base_dir, SAGEMAKER_MODEL_SERVER_WORKERS=2, CLASSIFIER_MAX_BATCH_SIZE=4)
        assert (
            create_app(predictor, small)
            .test_client()
            .get("/execution-parameters")
            .json["MaxConcurrentTransforms"]
            == 8
        )

    def test_one_log_line_per_request(self, client, jpeg_bytes, caplog):
        with caplog.at_level(logging.INFO, logger="classifier.serving.requests"):
            response = client.post("/invocations", data=jpeg_bytes, headers=JPEG)
        lines = [r.getMessage() for r in caplog.records if r.name == "classifier.serving.requests"]
        assert len(lines) == 1
        line = lines[0]
        assert line.startswith("POST /invocations 200 ")
        assert f"in={len(jpeg_bytes)}B" in line
        assert f"out={len(response.data)}B" in line
        assert response.headers["X-Request-Id"] in line


class TestJsonLines:
    """Batch transform's MultiRecord mini-batches: one base64 image per line, one answer per line."""

    HEADERS = {"Content-Type": "application/jsonlines"}

    def test_one_answer_per_line_in_order_with_errors_per_line(self, client, predictor, jpeg_bytes):
        good = base64.b64encode(jpeg_bytes)
        lines = [good, b'"' + good + b'"', b"!!not base64!!", base64.b64encode(b"not an image"), good]
        body = b"\n".join(lines)
        response = client.post("/invocations", data=body + b"\n", headers=self.HEADERS)
        assert response.status_code == 200
        assert response.mimetype == "application/jsonlines"
        answers = [json.loads(line) for line in response.data.decode().splitlines()]
        assert len(answers) == 5
        single = client.post("/invocations", data=jpeg_bytes, headers=JPEG).json["predictions"]
        for index in (0, 1, 4):
            assert [p["label"] for p in answers[index]["predictions"]] == [p["label"] for p in single]
        assert answers[2]["error"].startswith("line 3: not valid base64")
        assert answers[3]["error"].startswith("line 4:")

    def test_records_are_held_as_tensors_a_chunk_at_a_time(self, client, predictor, monkeypatch):
        """A mini-batch of many records never holds more input tensors than one chunk (and the
        batch the micro-batcher last ran): memory is bounded whatever the record count."""
        import weakref

        alive, peak = [0], [0]
        prepare = predictor.prepare

        def counting_prepare(data: bytes):
            tensor = prepare(data)
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
            weakref.finalize(tensor, lambda: alive.__setitem__(0, alive[0] - 1))
            return tensor

        monkeypatch.setattr(predictor, "prepare", counting_prepare)
        tiny = base64.b64encode(encode(photo(8, 8, seed=1), "PNG"))
        records = 10 * records_per_chunk(predictor)
        response = client.post("/invocations", data=b"\n".join([tiny] * records), headers=self.HEADERS)
        assert response.status_code == 200
        answers = response.data.decode().splitlines()
        assert len(answers) == records and len(set(answers)) == 1
        assert 0 < peak[0] <= records_per_chunk(predictor) + predictor.max_batch_size, peak[0]

    def test_an_empty_body_is_a_400(self, client):
        response = client.post("/invocations", data=b"\n\n", headers=self.HEADERS)
        assert response.status_code == 400
        assert "no records" in response.json["error"]

    def test_accept_must_allow_jsonlines(self, client, jpeg_bytes):
        headers = {**self.HEADERS, "Accept": "text/csv"}
        response = client.post("/invocations", data=base64.b64encode(jpeg_bytes), headers=headers)
        assert response.status_code == 406


def test_max_payload_is_advertised_in_whole_megabytes_rounded_down(predictor, base_dir):
    for configured, advertised in ((6.9, 6), (1, 1), (0.5, None)):
        settings = settings_for(base_dir, SAGEMAKER_MAX_PAYLOAD_IN_MB=configured)
        answer = create_app(predictor, settings).test_client().get("/execution-parameters").json
        assert answer.get("MaxPayloadInMB") == advertised, (configured, answer)
