"""The local transform's HTTP client against a server that closes connections on it: a
kept-alive connection the server dropped is retried once on a new one; an answer the server
sent before reading the whole body (413) is what the file's error says, not a broken pipe."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from classifier_client.batch_transform import InvocationsClient, RequestFailed

LIMIT = 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served: list[int] = []

    def log_message(self, *args) -> None:  # the test's output stays readable
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        if length > LIMIT:
            self._answer(413, {"error": f"the body is over {LIMIT} bytes"}, close=True)
            return
        self.rfile.read(length)
        self.served.append(length)
        # Every second answer closes the connection without saying so, as a keep-alive
        # timeout does between two requests.
        self._answer(200, {"predictions": [{"label": "7", "probability": 0.9}]}, close=False)
        if len(self.served) % 2 == 0:
            self.close_connection = True

    def _answer(self, status: int, payload: dict, close: bool) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def client() -> Iterator[InvocationsClient]:
    _Handler.served = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    client = InvocationsClient(
        f"http://127.0.0.1:{httpd.server_address[1]}", "image/jpeg", "application/json"
    )
    yield client
    client.close()
    httpd.shutdown()
    httpd.server_close()


def test_a_dropped_keep_alive_connection_is_retried_and_every_request_is_answered(client):
    answers = [json.loads(client.post(b"x" * 100)) for _ in range(6)]
    assert all(answer["predictions"][0]["label"] == "7" for answer in answers)
    assert _Handler.served == [100] * 6, "each request reached the server once"


def test_a_413_sent_before_the_body_was_read_is_the_files_error(client):
    with pytest.raises(RequestFailed) as failed:
        client.post(b"x" * (64 * 1024 * 1024))
    assert failed.value.details == {"status": 413, "error": f"the body is over {LIMIT} bytes"}
