"""What ``/invocations`` accepts: one table from each content type to how its body is answered.

The SageMaker inference toolkit maps each content type to its decoder and refuses the rest with
one error; here each entry also says what it answers with, so a new type is one entry.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass

from flask import Response

from classifier.serving.predictor import InvalidInput, Predictor

JSON_CONTENT_TYPE = "application/json"
# Prepared images held at once per request: this many micro-batches (see records_per_chunk).
CHUNK_BATCHES = 4


def json_response(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype=JSON_CONTENT_TYPE)


def _decode_instances(body: bytes) -> list[bytes]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(f"the body is not valid JSON: {error}") from error
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(
            'expected a JSON object {"instances": ["<base64 image>", ...]} with at least one instance'
        )
    images = []
    for position, instance in enumerate(instances):
        if not isinstance(instance, str):
            raise InvalidInput(f"instances[{position}] is not a base64 string")
        try:
            images.append(base64.b64decode(instance, validate=True))
        except (binascii.Error, ValueError) as error:
            raise InvalidInput(f"instances[{position}] is not valid base64: {error}") from error
    return images


def _decode_line(line: bytes) -> bytes:
    text = line.strip()
    if text.startswith(b'"'):
        try:
            text = json.loads(text).encode("ascii")
        except (ValueError, AttributeError, UnicodeEncodeError) as error:
            raise InvalidInput(f"not a JSON string of base64: {error}") from error
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput(f"not valid base64: {error}") from error


def records_per_chunk(predictor: Predictor) -> int:
    """How many records of one request are decoded and held as prepared images at once.

    This bounds a request's memory whatever its record count: at most this many prepared
    images (image_size² x 3 bytes each: 150 KB at 224 px, so 9.6 MB at a batch size of 16)
    besides the body itself, which the payload limit bounds, and the answer text.
    """
    return CHUNK_BATCHES * predictor.max_batch_size


def _answer_lines(predictor: Predictor, body: bytes, top_k: int) -> str:
    """One answer line per record line, in order; a bad record gets its own error line, not a
    400. Records are decoded, predicted and answered a chunk at a time: SageMaker fills a
    MultiRecord mini-batch with as many records as MaxPayloadInMB holds, and 6 MB of tiny
    images would otherwise become tens of gigabytes of input tensors at once."""
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        raise InvalidInput("the body holds no records (one base64 image per line)")
    chunk = records_per_chunk(predictor)
    answered: list = []
    for start in range(0, len(lines), chunk):
        answers: list[dict | None] = []
        images, slots = [], []
        for position, line in enumerate(lines[start : start + chunk], start):
            try:
                images.append(predictor.prepare(_decode_line(line)))
                slots.append(len(answers))
                answers.append(None)
            except InvalidInput as error:
                answers.append({"error": f"line {position + 1}: {error}"})
        for slot, prediction in zip(slots, predictor.predict(images, top_k), strict=True):
            answers[slot] = {"predictions": prediction}
        del images
        answered.extend(json.dumps(answer) + "\n" for answer in answers)
    return "".join(answered)


def _predict_all(predictor: Predictor, images: list[bytes], top_k: int, batch: bool) -> list:
    """Predictions in order, a chunk at a time (see :func:`records_per_chunk`)."""
    chunk = records_per_chunk(predictor)
    predictions = []
    for start in range(0, len(images), chunk):
        prepared = []
        for position, data in enumerate(images[start : start + chunk], start):
            try:
                prepared.append(predictor.prepare(data))
            except InvalidInput as error:
                raise InvalidInput(f"instances[{position}]: {error}" if batch else str(error)) from error
        predictions += predictor.predict(prepared, top_k)
    return predictions


def _answer_image(predictor: Predictor, body: bytes, top_k: int, content_type: str) -> Response:
    return json_response({"predictions": _predict_all(predictor, [body], top_k, False)[0]})


def _answer_instances(predictor: Predictor, body: bytes, top_k: int, content_type: str) -> Response:
    return json_response({"predictions": _predict_all(predictor, _decode_instances(body), top_k, True)})


def _answer_json_lines(predictor: Predictor, body: bytes, top_k: int, content_type: str) -> Response:
    return Response(_answer_lines(predictor, body, top_k), mimetype=content_type)


@dataclass(frozen=True)
class ContentType:
    """How a request body of one content type is answered, and with what type."""

    answer: Callable[[Predictor, bytes, int, str], Response]
    # None: the request's own type (JSON lines answer JSON lines).
    answer_type: str | None = JSON_CONTENT_TYPE


_IMAGE = ContentType(_answer_image)
_JSON_LINES = ContentType(_answer_json_lines, answer_type=None)
# Batch transform with SplitType=Line and BatchStrategy=MultiRecord: "MultiRecord means a
# mini-batch is set to contain as many records that can fit within the MaxPayloadInMB limit"
# (API reference, TransformJobDefinition). One record per line: a base64 image, bare or as
# a JSON string; one JSON answer per line, in order, so AssembleWith=Line lines them up.
CONTENT_TYPES: dict[str, ContentType] = {
    "image/jpeg": _IMAGE,
    "image/png": _IMAGE,
    "application/x-image": _IMAGE,
    JSON_CONTENT_TYPE: ContentType(_answer_instances),
    "application/jsonlines": _JSON_LINES,
    "application/x-jsonlines": _JSON_LINES,
}
