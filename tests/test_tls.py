"""rediss:// against a private TLS redis-server with a self-signed certificate, as Heroku Redis has."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from core import redis_url
from tests.conftest import DASHBOARD_PASSWORD, basic, free_port, make_app, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server speaking only TLS, with a fresh self-signed certificate; yields its rediss:// URL."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=redis.example", "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem"],
                   check=True, capture_output=True)  # fmt: skip
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", "cert.pem",
                               "--tls-key-file", "key.pem", "--tls-ca-cert-file", "cert.pem", "--tls-auth-clients",
                               "no", "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--bind", "127.0.0.1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL)  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/1"

    def ready() -> bool:
        try:
            with Redis.from_url(redis_url(url)) as client:
                return client.ping()
        except RedisError:
            return False

    try:
        wait_for(ready, 20, "the TLS redis-server")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def tls_app(migrated_database: str, tls_redis: str) -> Iterator[Flask]:
    yield from make_app(REDIS_URL=tls_redis)


def test_plain_redis_connections_are_refused_by_the_tls_server(tls_redis: str) -> None:
    with Redis.from_url(tls_redis.replace("rediss://", "redis://"), socket_timeout=2) as plain:
        with pytest.raises(RedisConnectionError):
            plain.ping()


def test_the_cycle_runs_over_tls_with_a_self_signed_certificate(tls_app: Flask, run_worker) -> None:
    client = tls_app.test_client()
    task_id = client.post("/multiply", data='{"x": 3, "y": 5}').json["task_id"]
    assert tls_app.extensions["queues"]["default"].count == 1
    assert client.get(f"/multiply/{task_id}").json["status"] == "queued"
    run_worker(tls_app)
    assert client.get(f"/multiply/{task_id}").json == {
        "task_id": task_id,
        "status": "finished",
        "params": {"x": 3.0, "y": 5.0, "delay": 0.0},
        "result": 15.0,
    }


def test_the_dashboard_reads_the_tls_redis(tls_app: Flask) -> None:
    client = tls_app.test_client()
    task_id = client.post("/multiply", data='{"x": 3, "y": 5}').json["task_id"]
    response = client.get("/rq/0/data/jobs/default/queued/8/asc/1.json", headers=basic("admin", DASHBOARD_PASSWORD))
    assert [job["id"] for job in json.loads(response.data)["jobs"]] == [task_id]
