"""The Flask app of a multi-model server: SageMaker's model API on a :class:`ModelRegistry`, and
the builder that makes it in the one gunicorn worker.

What a registry error answers is :data:`classifier.serving.http.MODEL_ERROR_STATUS`.
"""

from __future__ import annotations

import logging
import os

from flask import Flask, g, request

from classifier import constants
from classifier.serving.config import ServingSettings
from classifier.serving.content_types import json_response
from classifier.serving.http import (
    ApiError,
    answer_errors_as_json,
    execution_parameters,
    invoke,
    log_requests,
    route_metrics,
)
from classifier.serving.model_table import ModelTable
from classifier.serving.multi_model import ModelRegistry

logger = logging.getLogger(__name__)

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"


def create_multi_model_app(registry: ModelRegistry, settings: ServingSettings) -> Flask:
    """The multi-model WSGI app: /ping, /execution-parameters, the model API, /metrics."""
    app = Flask("classifier.serving.multi_model")
    log_requests(app)
    answer_errors_as_json(app)
    _route_models(app, registry, settings)
    route_metrics(app)
    return app


def _route_models(app: Flask, registry: ModelRegistry, settings: ServingSettings) -> None:
    @app.get("/ping")
    def ping():
        # Healthy with zero models: SageMaker loads them only when they are first invoked. Not
        # healthy while a replacement worker loads what its dead predecessor had loaded.
        if registry.restoring:
            return json_response({"error": "loading again the models a restarted worker had loaded"}, 503)
        return json_response({"status": "healthy", "models": len(registry.names())})

    @app.get("/execution-parameters")
    def get_execution_parameters():
        return json_response(execution_parameters(settings))

    @app.post("/models")
    def load_model():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("model_name") or not body.get("url"):
            raise ApiError(400, 'expected a JSON body {"model_name": ..., "url": ...}')
        loaded = registry.load(str(body["model_name"]), str(body["url"]))
        return json_response({"status": "loaded", **loaded.describe()})

    @app.get("/models")
    def list_models():
        shown, token = registry.page(request.args.get("next_page_token") or None)
        answer: dict[str, object] = {"models": [{"modelName": name, "modelUrl": url} for name, url in shown]}
        if token is not None:
            answer["nextPageToken"] = token
        return json_response(answer)

    @app.get("/models/<path:name>")
    def get_model(name: str):
        return json_response(registry.get(name).describe())

    @app.delete("/models/<path:name>")
    def unload_model(name: str):
        freed = registry.unload(name)
        return json_response({"status": "unloaded", "modelName": name, "freedMB": round(freed / 2**20, 1)})

    @app.post("/models/<path:name>/invoke")
    def invoke_model(name: str):
        g.target_model = request.headers.get(TARGET_MODEL_HEADER, "")
        logger.info("invoke %s (target model %s) id=%s", name, g.target_model or "-", g.request_id)
        predictor = registry.get(name).predictor
        return invoke(predictor, settings.max_payload_bytes)

    @app.post("/invocations")
    def invocations():
        raise ApiError(
            404, f"this is a multi-model endpoint: invoke POST /models/<name>/invoke ({TARGET_MODEL_HEADER})"
        )


def build_multi_model_app(
    settings: ServingSettings, slot: int | None, busy_flags, device_index: int, table: ModelTable
) -> Flask:
    """The multi-model app of the one gunicorn worker: no model until SageMaker loads one, or,
    after a restart, those the dead worker had loaded (restored in the background, /ping red
    until they are)."""
    from classifier.serving.worker import prepare_worker

    device, load = prepare_worker(settings, slot, busy_flags, device_index)
    budget = settings.multi_model_memory_mb * 2**20
    registry = ModelRegistry(load, budget, table=table, wait_s=settings.timeout_s)
    logger.info(
        "worker %d serving multi-model endpoints on %s: memory budget %d MB (%s)",
        os.getpid(), device, settings.multi_model_memory_mb, constants.MULTI_MODEL_MEMORY_MB_ENV,
    )  # fmt: skip
    registry.restore(wait=False)
    return create_multi_model_app(registry, settings)
