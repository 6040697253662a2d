"""The Flask app of a single-model server: the SageMaker hosting contract on a :class:`Predictor`,
and the builder that makes it in each gunicorn worker.

The HTTP pieces it shares with the multi-model app are in :mod:`classifier.serving.http`; what
/invocations accepts is :mod:`classifier.serving.content_types`.
"""

from __future__ import annotations

import logging
import os
import sys

from flask import Flask
from gunicorn.arbiter import Arbiter

from classifier.artifacts import ModelArtifactError
from classifier.serving import metrics
from classifier.serving.config import ServingSettings
from classifier.serving.content_types import json_response
from classifier.serving.http import (
    answer_errors_as_json,
    execution_parameters,
    invoke,
    log_requests,
    route_metrics,
)
from classifier.serving.predictor import Predictor

logger = logging.getLogger(__name__)


def create_app(predictor: Predictor, settings: ServingSettings) -> Flask:
    """The WSGI app serving ``predictor``; tests pass a small model, gunicorn the real one."""
    app = Flask("classifier.serving")
    log_requests(app)
    answer_errors_as_json(app)
    _route_the_hosting_contract(app, predictor, settings)
    metrics.record_model(predictor)
    route_metrics(app)
    return app


def _route_the_hosting_contract(app: Flask, predictor: Predictor, settings: ServingSettings) -> None:
    @app.get("/ping")
    def ping():
        if predictor.ready:
            return json_response({"status": "healthy"})
        return json_response({"error": "the model is not loaded"}, 503)

    @app.get("/execution-parameters")
    def get_execution_parameters():
        return json_response(execution_parameters(settings))

    @app.post("/invocations")
    def invocations():
        return invoke(predictor, settings.max_payload_bytes)


def build_single_model_app(settings: ServingSettings, slot: int | None, busy_flags, device_index: int):
    """The Flask app of one worker: load the model on this worker's device, warm up."""
    from classifier.serving.worker import prepare_worker

    device, load = prepare_worker(settings, slot, busy_flags, device_index)
    try:
        predictor = load(settings.model_dir)
    except ModelArtifactError as error:
        logger.error("the model failed to load from %s: %s", settings.model_dir, error)
        # Makes the gunicorn master halt: the container exits instead of answering /ping.
        sys.exit(Arbiter.WORKER_BOOT_ERROR)
    except Exception as error:  # noqa: BLE001 - any load failure must stop the container
        logger.exception(
            "the model failed to load from %s: %s: %s",
            settings.model_dir,
            type(error).__name__,
            error,
        )
        sys.exit(Arbiter.WORKER_BOOT_ERROR)
    logger.info("worker %d ready on %s (slot %s)", os.getpid(), device, slot)
    return create_app(predictor, settings)
