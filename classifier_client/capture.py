"""Data capture: what an endpoint is asked to record, and the records SageMaker writes.

``--data-capture S3_URI --capture-percent P`` becomes the endpoint config's
``DataCaptureConfig``: inputs and outputs, with the JSON content types listed so that answers
are stored as readable text while images (any type not listed) are stored as base64.

SageMaker writes the records as JSON lines, one file per few minutes, under
``DESTINATION/ENDPOINT/VARIANT/yyyy/mm/dd/hh/*.jsonl``. :func:`parse_record` reads one line
back into the images of the request and the answers the endpoint gave for them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from classifier_client.config import ConfigurationError, parse_s3_uri

# The Python SDK's DataCaptureConfig default ("sampling_percentage (int): Optional.
# Default=20"): every request at high traffic is a lot of S3 objects.
DEFAULT_CAPTURE_PERCENT = 20
# API reference, CaptureContentTypeHeader: "The list of all content type headers that SageMaker
# AI will treat as JSON and capture accordingly"; DataCaptureConfig: "If no headers are
# specified SageMaker AI will by default base64 encode when capturing the data." Our answers
# are application/json (JSON lines for JSON-lines requests); images are left out, so base64.
JSON_CONTENT_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines")


@dataclass(frozen=True)
class DataCapture:
    destination: str
    percent: int = DEFAULT_CAPTURE_PERCENT

    def check(self) -> DataCapture:
        parse_s3_uri(self.destination)
        # API reference, DataCaptureConfig: DestinationS3Uri "Maximum length of 512";
        # InitialSamplingPercentage "Minimum value of 0. Maximum value of 100."
        if len(self.destination) > 512:
            raise ConfigurationError("--data-capture: the S3 URI is longer than AWS's 512 characters")
        if not 0 <= self.percent <= 100:
            raise ConfigurationError(f"--capture-percent must be 0-100, got {self.percent}")
        return self

    def request(self, kms_key: str | None) -> dict[str, Any]:
        """DataCaptureConfig, encrypted with ``kms_key`` (the account's output key) when set."""
        config: dict[str, Any] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": self.percent,
            "DestinationS3Uri": self.destination,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": list(JSON_CONTENT_TYPES)},
        }
        if kms_key:
            config["KmsKeyId"] = kms_key
        return config


# --- reading the records back -------------------------------------------------------------


class BadRecord(ValueError):
    """A capture line that is not SageMaker's format, or not a request this image answers."""


@dataclass(frozen=True)
class CapturedImage:
    """One image of a captured request and the endpoint's answer for it."""

    event_id: str
    time: dt.datetime
    variant: str
    instance: int
    content_type: str
    data: bytes
    predictions: tuple[dict[str, Any], ...]

    @property
    def top(self) -> dict[str, Any]:
        return self.predictions[0] if self.predictions else {"label": "", "probability": 0.0}


def _payload(capture: dict, key: str) -> tuple[str, bytes]:
    """(content type, bytes) of endpointInput or endpointOutput, whatever its encoding."""
    part = capture.get(key)
    if not isinstance(part, dict) or not isinstance(part.get("data"), str):
        raise BadRecord(f"captureData.{key} is missing (was the {key[8:].lower()} captured?)")
    content_type = str(part.get("observedContentType") or "").split(";")[0].strip().lower()
    data = part["data"]
    if str(part.get("encoding", "")).upper() == "BASE64":
        try:
            return content_type, base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadRecord(f"captureData.{key}.data is not valid base64: {error}") from None
    return content_type, data.encode()


def _inference_time(metadata: dict) -> dt.datetime:
    text = str(metadata.get("inferenceTime") or "")
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord(f"eventMetadata.inferenceTime {text[:40]!r} is not a time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _request_images(content_type: str, body: bytes) -> list[bytes]:
    """The images of one request, as /invocations reads them (serving/content_types.py)."""
    if content_type == "application/json":
        document = json.loads(body)
        instances = document.get("instances") if isinstance(document, dict) else None
        if not isinstance(instances, list):
            raise BadRecord('a JSON request without "instances"')
        return [base64.b64decode(item) for item in instances if isinstance(item, str)]
    if content_type in JSON_CONTENT_TYPES:
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        return [base64.b64decode(json.loads(line) if line.startswith(b'"') else line) for line in lines]
    return [body]


def _answers(content_type: str, body: bytes, count: int) -> list[list[dict[str, Any]]]:
    """The ranked predictions per image: {"predictions": [...]} for one image, a list of those
    for "instances", one {"predictions": [...]} (or {"error": ...}) per line for JSON lines."""
    if content_type in ("application/jsonlines", "application/x-jsonlines"):
        answers = [json.loads(line) for line in body.splitlines() if line.strip()]
        return [answer.get("predictions") or [] for answer in answers]
    document = json.loads(body)
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list):
        raise BadRecord(f"the answer holds no predictions: {body[:200]!r}")
    if count == 1 and predictions and isinstance(predictions[0], dict):
        return [predictions]
    return [p if isinstance(p, list) else [] for p in predictions]


def parse_record(line: str | bytes, variant: str) -> list[CapturedImage]:
    """The images of one captured request (JSON line), each with its ranked predictions."""
    try:
        record = json.loads(line)
        capture = record["captureData"]
        metadata = record.get("eventMetadata") or {}
        event_id = str(metadata.get("eventId") or "")
        if not event_id:
            raise BadRecord("eventMetadata.eventId is missing")
        moment = _inference_time(metadata)
        input_type, body = _payload(capture, "endpointInput")
        output_type, answer = _payload(capture, "endpointOutput")
        images = _request_images(input_type, body)
        answers = _answers(output_type, answer, len(images))
    except BadRecord:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise BadRecord(f"not a SageMaker capture record: {type(error).__name__}: {error}") from None
    if len(answers) != len(images):
        raise BadRecord(f"{len(images)} images but {len(answers)} answers")
    return [
        CapturedImage(
            event_id=event_id,
            time=moment,
            variant=variant,
            instance=position,
            content_type=input_type,
            data=image,
            predictions=tuple(p for p in ranked if isinstance(p, dict)),
        )
        for position, (image, ranked) in enumerate(zip(images, answers, strict=True))
    ]
