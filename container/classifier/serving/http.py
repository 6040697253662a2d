"""The HTTP pieces every model server app shares (single- and multi-model): errors as JSON,
one log line per request, the metrics routes, /execution-parameters and /invocations.

Every error is JSON ``{"error": ...}``; mistakes in the request are 4xx, and only a fault of
the server is a 500, which carries a request id that is also in the log. What each error of the
multi-model registry answers is one table, :data:`MODEL_ERROR_STATUS`.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from classifier import constants
from classifier.serving import metrics, model_errors
from classifier.serving.config import ServingSettings
from classifier.serving.content_types import CONTENT_TYPES, json_response
from classifier.serving.predictor import InvalidInput, ModelTimeout, Predictor

logger = logging.getLogger("classifier.serving.requests")

__all__ = [
    "MODEL_ERROR_STATUS", "ApiError", "answer_errors_as_json", "execution_parameters", "invoke",
    "log_requests", "route_metrics",
]  # fmt: skip

REQUEST_ID_HEADER = "X-Request-Id"
_ATTRIBUTE_SEPARATOR = re.compile(r"[,;]")
# A caller's own request id is kept only if it cannot forge log lines.
_REQUEST_ID = re.compile(r"[\w.:-]{1,128}")

MODEL_ERROR_STATUS: dict[type[model_errors.ModelError], int] = {
    model_errors.ModelNotLoaded: 404,
    model_errors.ModelNotFound: 404,
    model_errors.ModelAlreadyLoaded: 409,
    model_errors.ModelLoadFailed: 500,
    model_errors.ModelRestoring: 503,
    # AWS, "Custom containers contract for multi-model endpoints" (LoadModel): "Any time a model
    # cannot be loaded due to lack of memory or to any other resource, this API should return a
    # 507 HTTP status code."
    model_errors.ModelLoadRefused: 507,
}


class ApiError(Exception):
    """An HTTP error with a message for the caller."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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


def check_accept(answer_type: str) -> None:
    accept = request.accept_mimetypes
    if not accept or accept.best_match([answer_type]):
        return
    raise ApiError(406, f"cannot answer with {request.headers.get('Accept')!r}: only {answer_type}")


def too_big(limit: int) -> ApiError:
    return ApiError(413, f"request body over the limit of {limit} bytes ({constants.MAX_PAYLOAD_IN_MB_ENV})")


def read_body(limit: int) -> bytes:
    """The body; a chunked one may not announce its size, so the read is bounded too."""
    body = request.stream.read(limit + 1)
    g.bytes_in = len(body)
    if len(body) > limit:
        raise too_big(limit)
    return body


def log_requests(app: Flask) -> None:
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


def answer_errors_as_json(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        response = json_response({"error": error.message}, error.status)
        if error.status == 413:
            # The unread rest of the body would be parsed as the next request.
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(model_errors.ModelError)
    def _model_error(error: model_errors.ModelError):
        if isinstance(error, model_errors.ModelLoadRefused):
            # SageMaker unloads models to make room: the log says which load ran short, and by how much.
            logger.warning("%s", error)
        return json_response({"error": str(error)}, MODEL_ERROR_STATUS.get(type(error), 500))

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


def execution_parameters(settings: ServingSettings) -> dict:
    """GET /execution-parameters: what batch transform may send this server."""
    parameters = {
        "MaxConcurrentTransforms": settings.concurrent_transforms,
        "BatchStrategy": settings.batch_strategy,
    }
    if settings.advertised_payload_mb is not None:
        parameters["MaxPayloadInMB"] = settings.advertised_payload_mb
    return parameters


def invoke(predictor: Predictor, payload_limit: int) -> Response:
    """POST /invocations on ``predictor``: the request's content type picks its answer."""
    # Refused before a byte of the body is read.
    if request.content_length is not None and request.content_length > payload_limit:
        raise too_big(payload_limit)
    content_type = request.mimetype
    handler = CONTENT_TYPES.get(content_type)
    if handler is None:
        raise ApiError(
            415,
            f"unsupported Content-Type {request.content_type or '(none)'!r}: use one of "
            f"{', '.join(CONTENT_TYPES)}",
        )
    check_accept(handler.answer_type or content_type)
    top_k = parse_top_k(request.headers.get(constants.CUSTOM_ATTRIBUTES_HEADER), predictor.default_top_k)
    return handler.answer(predictor, read_body(payload_limit), top_k, content_type)
