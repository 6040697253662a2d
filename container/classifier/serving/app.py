"""The Flask app of a single-model server: the SageMaker hosting contract on a :class:`Predictor`.

The HTTP pieces it shares with the multi-model app are in :mod:`classifier.serving.http`; what
/invocations accepts is :mod:`classifier.serving.content_types`.
"""

from __future__ import annotations

from flask import Flask

from classifier.serving import metrics
from classifier.serving.config import ServingSettings
from classifier.serving.http import (
    answer_errors_as_json,
    execution_parameters,
    invoke,
    json_response,
    log_requests,
    route_metrics,
)
from classifier.serving.predictor import Predictor


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
