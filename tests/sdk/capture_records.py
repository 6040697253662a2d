"""Data capture records as SageMaker writes them (model-monitor-data-capture-endpoint): one JSON
line per request, the input base64-encoded, the JSON answer as text."""

from __future__ import annotations

import base64
import json


def capture_record(event_id: str, when: str, content_type: str, body: bytes, answer: str) -> str:
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": content_type,
                    "mode": "INPUT",
                    "data": base64.b64encode(body).decode(),
                    "encoding": "BASE64",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": answer,
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": event_id, "inferenceTime": when},
            "eventVersion": "0",
        }
    )
