"""The Flask app: the SageMaker hosting contract on top of a :class:`Predictor`.

Every error is JSON ``{"error": ...}``; mistakes in the request are 4xx, and only a
fault of the server is a 500, which carries a request id that is also in the log.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from classifier import constants
from classifier.serving import metrics
from classifier.serving.config import ServingSettings
from classifier.serving.predictor import InvalidInput, ModelTimeout, Predictor

logger = logging.getLogger("classifier.serving.requests")

IMAGE_CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")
JSON_CONTENT_TYPE = "application/json"
# Batch transform with SplitType=Line and BatchStrategy=MultiRecord: "MultiRecord means a
# mini-batch is set to contain as many records that can fit within the MaxPayloadInMB limit"
# (API reference, TransformJobDefinition). One record per line: a base64 image, bare or as
# a JSON string; one JSON answer per line, in order, so AssembleWith=Line lines them up.
JSONLINES_CONTENT_TYPES = ("application/jsonlines", "application/x-jsonlines")
SUPPORTED_CONTENT_TYPES = (*IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE, *JSONLINES_CONTENT_TYPES)
REQUEST_ID_HEADER = "X-Request-Id"
# Prepared images held at once per request: this many micro-batches (see records_per_chunk).
CHUNK_BATCHES = 4
_ATTRIBUTE_SEPARATOR = re.compile(r"[,;]")
# A caller's own request id is kept only if it cannot forge log lines.
_REQUEST_ID = re.compile(r"[\w.:-]{1,128}")


class ApiError(Exception):
    """An HTTP error with a message for the caller."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype=JSON_CONTENT_TYPE)


def parse_top_k(header: str | None, default: int) -> int:
    """``top_k`` from SageMaker custom attributes (``top_k=3``, pairs split by , or ;)."""
    if not header:
        return default
    for pair in _ATTRIBUTE_SEPARATOR.split(header):
        key, sep, value = pair.partition("=")
        if key.strip().lower() != "top_k":
            continue
        value = value.strip()
        if not sep or not value.isdigit() or int(value) < 1:
            raise ApiError(
                400,
                f"{constants.CUSTOM_ATTRIBUTES_HEADER}: top_k must be a positive integer, got {value!r}",
            )
        return int(value)
    return default


def _check_accept(answer_type: str) -> None:
    accept = request.accept_mimetypes
    if not accept or accept.best_match([answer_type]):
        return
    raise ApiError(406, f"cannot answer with {request.headers.get('Accept')!r}: only {answer_type}")


def _too_big(limit: int) -> ApiError:
    return ApiError(413, f"request body over the limit of {limit} bytes ({constants.MAX_PAYLOAD_IN_MB_ENV})")


def _read_body(limit: int) -> bytes:
    """The body; a chunked one may not announce its size, so the read is bounded too."""
    body = request.stream.read(limit + 1)
    g.bytes_in = len(body)
    if len(body) > limit:
        raise _too_big(limit)
    return body


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
    answered = []
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


def create_app(predictor: Predictor, settings: ServingSettings) -> Flask:
    """The WSGI app serving ``predictor``; tests pass a small model, gunicorn the real one."""
    app = Flask("classifier.serving")
    _log_requests(app)
    _answer_errors_as_json(app)
    _route_the_hosting_contract(app, predictor, settings)
    metrics.record_model(predictor)
    route_metrics(app)
    return app


def _log_requests(app: Flask) -> None:
    """One log line per request, with an id the caller may give and always gets back."""

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.bytes_in = request.content_length or 0
        logger.debug("started %s %s id=%s", request.method, request.path, g.request_id)

    @app.after_request
    def _log_request(response: Response):
        response.headers[REQUEST_ID_HEADER] = g.request_id
        latency_ms = (time.perf_counter() - g.started) * 1000
        logger.info(
            "%s %s %d %.1fms in=%dB out=%sB id=%s",
            request.method,
            request.path,
            response.status_code,
            latency_ms,
            g.bytes_in,
            response.content_length if response.content_length is not None else "-",
            g.request_id,
        )
        return response


def _answer_errors_as_json(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        response = json_response({"error": error.message}, error.status)
        if error.status == 413:
            # The unread rest of the body would be parsed as the next request.
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(InvalidInput)
    def _invalid_input(error: InvalidInput):
        return json_response({"error": str(error)}, 400)

    @app.errorhandler(ModelTimeout)
    def _timeout(error: ModelTimeout):
        logger.error("request %s: %s", g.request_id, error)
        return json_response({"error": str(error), "request_id": g.request_id}, 503)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        response = json_response({"error": error.description}, error.code or 500)
        if error.code == 413:
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(Exception)
    def _internal_error(error: Exception):
        logger.exception("request %s failed with an internal error", g.request_id)
        return json_response({"error": "internal server error", "request_id": g.request_id}, 500)


def _route_the_hosting_contract(app: Flask, predictor: Predictor, settings: ServingSettings) -> None:
    @app.get("/ping")
    def ping():
        if predictor.ready:
            return json_response({"status": "healthy"})
        return json_response({"error": "the model is not loaded"}, 503)

    @app.get("/execution-parameters")
    def execution_parameters():
        return json_response(_execution_parameters(settings))

    @app.post("/invocations")
    def invocations():
        return _invoke(predictor, settings.max_payload_bytes)


def route_metrics(app: Flask) -> None:
    """GET /metrics (Prometheus text, all workers), and the count and latency of each request.

    SageMaker never routes /metrics to the container: it is for docker run and self-hosting.
    """

    @app.get("/metrics")
    def prometheus_metrics():
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    @app.after_request
    def _count_request(response: Response):
        # The URL rule, not the path: 404 probes of random paths must not grow the label set.
        rule = request.url_rule.rule if request.url_rule is not None else None
        started = g.get("started")
        latency = time.perf_counter() - started if started is not None else 0.0
        metrics.observe_request(rule, response.status_code, latency)
        return response


def _execution_parameters(settings: ServingSettings) -> dict:
    parameters = {"MaxConcurrentTransforms": settings.workers, "BatchStrategy": settings.batch_strategy}
    # Whole megabytes, rounded down: a mini-batch sized to a rounded-up figure would be
    # refused with 413. Below 1 MB there is no honest figure (0 asks for chunked
    # transfers), so the job's own MaxPayloadInMB applies.
    if settings.max_payload_mb >= 1:
        parameters["MaxPayloadInMB"] = int(settings.max_payload_mb)
    return parameters


def _invoke(predictor: Predictor, payload_limit: int) -> Response:
    # Refused before a byte of the body is read.
    if request.content_length is not None and request.content_length > payload_limit:
        raise _too_big(payload_limit)
    content_type = request.mimetype
    if content_type not in SUPPORTED_CONTENT_TYPES:
        raise ApiError(
            415,
            f"unsupported Content-Type {request.content_type or '(none)'!r}: use one of "
            f"{', '.join(SUPPORTED_CONTENT_TYPES)}",
        )
    lines = content_type in JSONLINES_CONTENT_TYPES
    _check_accept(content_type if lines else JSON_CONTENT_TYPE)
    top_k = parse_top_k(request.headers.get(constants.CUSTOM_ATTRIBUTES_HEADER), predictor.default_top_k)
    body = _read_body(payload_limit)
    if lines:
        return Response(_answer_lines(predictor, body, top_k), mimetype=content_type)
    batch = content_type == JSON_CONTENT_TYPE
    images = _decode_instances(body) if batch else [body]
    predictions = _predict_all(predictor, images, top_k, batch)
    return json_response({"predictions": predictions if batch else predictions[0]})
