"""Which names and values are secrets, and how the training job keeps them out of its output."""

from __future__ import annotations

import io
import sys

import pytest

from classifier import redaction


@pytest.mark.parametrize(
    "name",
    [
        "HF_TOKEN",
        "db_password",
        "my_api_key",
        "AWS_ACCESS_KEY_ID",
        "passwd",
        "GIT_CREDENTIALS",
        "client_secret",
    ],
)
def test_names_that_hold_secrets(name):
    assert redaction.names_a_secret(name)


@pytest.mark.parametrize(
    "name", ["MLFLOW_TRACKING_URI", "EPOCHS", "SAGEMAKER_REGION", "KEYBOARD", "TOKENIZERS_PARALLELISM"]
)
def test_names_that_do_not(name):
    assert not redaction.names_a_secret(name)


def test_a_uris_password_is_masked_and_the_rest_kept():
    assert redaction.redact_uri("https://ann:pw@mlflow.example.com:5000/x?y=1") == (
        "https://ann:***@mlflow.example.com:5000/x?y=1"
    )
    assert redaction.redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redaction.redact_uri("https://tok_abcdef123@host/x") == "https://***@host/x"
    assert redaction.uri_secret("http://tok_abcdef123@host/") == "tok_abcdef123"


def test_the_redactor_masks_secret_values_and_short_passwords_only_inside_uris():
    redactor = redaction.Redactor.from_environ(
        {"MLFLOW_TRACKING_URI": "http://ann:abc@host/", "HF_TOKEN": "hf_0123456789", "EPOCHS": "abc"}
    )
    text = "to http://ann:abc@host/ with hf_0123456789; abc epochs"
    assert redactor.redact(text) == "to http://ann:***@host/ with ***; abc epochs"


def test_installed_redaction_covers_prints_and_tracebacks(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(redaction, "_installed", redaction.Redactor())
    redaction.install({"API_KEY": "k-0123456789"})
    print("key k-0123456789")
    print("error: k-0123456789", file=sys.stderr)
    assert out.getvalue() == "key ***\n" and err.getvalue() == "error: ***\n"
    assert redaction.redact("k-0123456789!") == "***!"
