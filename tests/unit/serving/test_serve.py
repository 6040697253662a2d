"""``serve``'s checks before gunicorn starts, and what it leaves for libgomp to read."""

from __future__ import annotations

import subprocess
import sys

from classifier.serving import serve


def test_importing_serve_does_not_load_torch():
    # libgomp reads OMP_WAIT_POLICY once, when torch loads it: main() must come first.
    probe = "import sys, classifier.serving.serve; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_the_serving_path_imports_nothing_only_training_needs():
    # Cold start: smdebug, matplotlib, sagemaker-training and nncf cost seconds and serve nothing.
    probe = (
        "import sys, classifier.serving.gunicorn_app, classifier.serving.predictor;"
        "training_only = ('smdebug', 'matplotlib', 'sagemaker_training', 'nncf');"
        "print(sorted(m for m in training_only if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_openmp_defaults_leave_the_users_choice():
    env = {}
    serve.apply_openmp_defaults(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    serve.apply_openmp_defaults(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"GOMP_SPINCOUNT": "10000"}
    serve.apply_openmp_defaults(env)
    assert env == {"GOMP_SPINCOUNT": "10000"}


def quiet_main(monkeypatch):
    """main() without touching this process's OpenMP environment or pytest's log handlers."""
    monkeypatch.setattr(serve, "apply_openmp_defaults", lambda: None)
    monkeypatch.setattr(serve, "configure_logging", lambda level: None)


def test_invalid_environment_exits_2_naming_the_variable(monkeypatch, caplog):
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "many")
    quiet_main(monkeypatch)
    assert serve.main() == serve.EXIT_CONFIG_ERROR
    assert "SAGEMAKER_MODEL_SERVER_WORKERS='many'" in caplog.text


def test_missing_model_exits_3_with_the_reason(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    quiet_main(monkeypatch)
    assert serve.main() == serve.EXIT_MODEL_ERROR
    assert f"no servable model in {tmp_path / 'model'}" in caplog.text
