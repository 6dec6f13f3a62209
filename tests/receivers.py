"""A webhook receiver on 127.0.0.1 for the tests, the Dispatcher run in a thread of the test's process, and the
API calls that register a webhook and read its deliveries."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks import Webhook as Verifier

from longjobs.push import outbox


class Receiver:
    """A webhook receiver on 127.0.0.1: it records every request and answers each as the next of `answers` says (an
    HTTP status; "hang": nothing for 12 s; ("redirect", url)), then 200."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[float, str, dict[str, str], bytes]] = []  # when, path, headers, body
        self.connections: set[tuple[str, int]] = set()  # the senders' addresses: one for each connection
        self.answers: list[object] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # a connection serves request after request, as most receivers' do

            def do_POST(self) -> None:
                receiver.connections.add(self.client_address)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((time.monotonic(), self.path, dict(self.headers), body))
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == "hang":
                    time.sleep(12)
                    answer = 200
                if isinstance(answer, tuple):
                    self.send_response(302)
                    self.send_header("Location", answer[1])
                else:
                    self.send_response(int(answer))  # type: ignore[call-overload]
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False  # a hanging answer does not hold close()
        self.server.handle_error = lambda *args: None  # type: ignore[method-assign]  # a client that gave up
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, secret: str, path: str = "/hooks") -> list[dict]:
        """The payloads POSTed to a path, each verified with its webhook's secret as a receiver verifies it."""
        return [Verifier(secret).verify(body, headers) for _, to, headers, body in self.requests if to == path]


@contextmanager
def dispatching(app: Flask) -> Iterator[None]:
    """The clock's Dispatcher, sending the app's deliveries from a thread of this process while in the block."""
    stop = threading.Event()
    thread = threading.Thread(target=outbox.Dispatcher(app).run, args=[stop])
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def register(client: FlaskClient, url: str, *events: str) -> dict:
    response = client.post("/webhooks", json={"url": url, "events": list(events)})
    assert response.status_code == 201, response.json
    assert response.headers["Location"] == f"/webhooks/{response.json['webhook_id']}"
    return response.json


def deliveries(client: FlaskClient, webhook: dict) -> list[dict]:
    response = client.get(f"/webhooks/{webhook['webhook_id']}/deliveries")
    assert response.status_code == 200
    return response.json["deliveries"]
