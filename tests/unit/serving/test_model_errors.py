"""What each error of the multi-model registry answers over HTTP: one table in ``http``, and a
registry that names no status."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from flask import Flask

from classifier.serving import model_errors, multi_model
from classifier.serving.http import MODEL_ERROR_STATUS, answer_errors_as_json, log_requests

# SageMaker's multi-model contract, and what the server answered before the table existed.
CONTRACT = {
    model_errors.ModelNotLoaded: 404,
    model_errors.ModelNotFound: 404,
    model_errors.ModelAlreadyLoaded: 409,
    model_errors.ModelLoadFailed: 500,
    model_errors.ModelRestoring: 503,
    model_errors.ModelLoadRefused: 507,
}


def answer_to(error: Exception):
    app = Flask("test")
    log_requests(app)
    answer_errors_as_json(app)

    @app.get("/fail")
    def fail():
        raise error

    return app.test_client().get("/fail")


@pytest.mark.parametrize(("error_class", "status"), CONTRACT.items(), ids=[c.__name__ for c in CONTRACT])
def test_each_model_error_answers_its_status_with_its_message(error_class, status):
    response = answer_to(error_class("model 'm': the reason"))
    assert response.status_code == status
    assert response.json == {"error": "model 'm': the reason"}


def test_the_table_maps_every_model_error():
    declared = {
        value
        for value in vars(model_errors).values()
        if isinstance(value, type)
        and issubclass(value, model_errors.ModelError)
        and value is not model_errors.ModelError
    }
    assert set(MODEL_ERROR_STATUS) == declared == set(CONTRACT)


def test_the_registry_imports_nothing_of_http():
    assert multi_model.__file__ is not None
    tree = ast.parse(Path(multi_model.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    assert "classifier.serving.http.ApiError" not in imported
    assert not [name for name in imported if name.split(".")[0] == "flask" or "serving.http" in name]
