"""The address guard: a webhook's URL refused at registration unless it is public or its host is let in
(WEBHOOK_ALLOWED_HOSTS), and a host that later resolves to a forbidden address refused at delivery (DNS rebinding).
"""

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import (
    ROOT,
    app_fixture,
    free_port,
    procfile_command,
    service_env,
    stop_process,
    submit,
    wait_for,
    wait_for_web,
)
from tests.receivers import Receiver, deliveries

app = app_fixture(WEBHOOK_ALLOWED_HOSTS="127.0.0.1", WEBHOOK_RETRY_SECONDS="1,1")  # as test_webhooks.py

guarded_app = app_fixture()  # no host let in: the address guard as it runs in production


PUBLIC = "http://93.184.216.34/hooks"  # a public address, never connected to at registration


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "ftp://93.184.216.34/", "events": ["task.finished"]}, "must be an http:// or https:// URL"),
        ({"url": "example", "events": ["task.finished"]}, "must be an http:// or https:// URL"),
        ({"url": "http://exa mple.com/", "events": ["task.finished"]}, "must not contain spaces"),
        ({"url": "http:///hooks", "events": ["task.finished"]}, "must be an http:// or https:// URL"),
        ({"url": "http://:80/hooks", "events": ["task.finished"]}, "has no host"),
        ({"url": "http://93.184.216.34:99999/", "events": ["task.finished"]}, "invalid port"),
        ({"url": "http://me:secret@93.184.216.34/", "events": ["task.finished"]}, "user name or password"),
        ({"url": PUBLIC + "#here", "events": ["task.finished"]}, "#fragment"),
        ({"url": PUBLIC + "/" + "x" * 2048, "events": ["task.finished"]}, "at most 2048 characters"),
        ({"url": PUBLIC, "events": []}, "at least one event"),
        ({"url": PUBLIC, "events": ["task.done"]}, "unknown event 'task.done'"),
        ({"url": PUBLIC, "events": ["task.failed", "task.failed"]}, "more than once"),
        ({"url": PUBLIC}, "key 'events' is required"),
        ({"url": PUBLIC, "events": ["task.failed"], "secret": "mine"}, "unknown key 'secret'"),
        ({"url": 7, "events": ["task.failed"]}, "'url'"),
        ({"url": "http://no-such-host.invalid/", "events": ["task.failed"]}, "does not resolve"),
        ({"url": "http://localhost:5000/", "events": ["task.failed"]}, "localhost resolves to"),
        *(
            ({"url": f"http://{host}/hooks", "events": ["task.finished"]}, f"is a {kind} address")
            for host, kind in [
                ("127.0.0.1", "loopback"),
                ("127.1", "loopback"),
                ("2130706433", "loopback"),
                ("[::1]", "loopback"),
                ("[::ffff:127.0.0.1]", "loopback"),
                ("10.0.0.1", "private"),
                ("172.16.5.4", "private"),
                ("192.168.1.1", "private"),
                ("[fd00::1]", "private"),
                ("169.254.169.254", "link-local"),
                ("[fe80::1]", "link-local"),
                ("224.0.0.1", "multicast"),
                ("[ff02::1]", "multicast"),
                ("0.0.0.0", "unspecified"),
                ("100.64.0.1", "non-public"),
            ]
        ),
    ],
)
def test_a_bad_webhook_is_refused_and_leaves_nothing(guarded_app: Flask, body: dict, message: str) -> None:
    client = guarded_app.test_client()
    response = client.post("/webhooks", json=body)
    assert response.status_code == 400, response.json
    assert message in response.json["error"]
    assert client.get("/webhooks").json == {"webhooks": []}


def test_a_public_address_is_taken_and_only_an_allowed_host_gets_past_the_guard(guarded_app: Flask) -> None:
    client = guarded_app.test_client()
    assert client.post("/webhooks", json={"url": PUBLIC, "events": ["task.failed"]}).status_code == 201
    assert (
        client.post("/webhooks", json={"url": "https://[2606:4700::1]/x", "events": ["task.failed"]}).status_code == 201
    )
    assert len(client.get("/webhooks").json["webhooks"]) == 2


def unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not unshare_works(), reason="needs unshare --mount (root) to give a process hosts of its own")
def test_names_that_resolve_to_forbidden_addresses_are_refused_at_registration_and_delivery(
    app: Flask, receiver: Receiver, run_worker, tmp_path: Path
) -> None:
    """`web` and `clock` run in a mount namespace whose /etc/hosts names private, link-local, IPv6-mapped, loopback
    and multicast addresses; a name that resolves to a public address at registration and to loopback at delivery
    (DNS rebinding) is refused at the delivery, and nothing reaches the receiver behind it."""
    hosts = tmp_path / "hosts"
    names = {"private.test": "10.1.2.3", "metadata.test": "169.254.169.254", "mapped.test": "::ffff:127.0.0.1",
             "loop6.test": "::1", "group.test": "224.0.0.251", "rebind.test": "93.184.216.34"}  # fmt: skip
    hosts.write_text(Path("/etc/hosts").read_text() + "".join(f"{ip} {name}\n" for name, ip in names.items()))
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"} | service_env()

    def start(process: str, log: Path, **more: str) -> subprocess.Popen:
        command = f"mount --bind {hosts} /etc/hosts && exec {procfile_command(process)}"
        with log.open("w") as out:
            return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c", command],
                                    cwd=ROOT, env=env | more, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip

    port = free_port()
    web = start("web", tmp_path / "web.log", PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(web, base, tmp_path / "web.log")
        for name, ip in names.items():
            response = requests.post(f"{base}/webhooks", json={"url": f"http://{name}/", "events": ["task.failed"]},
                                     timeout=10)  # fmt: skip
            if name == "rebind.test":
                assert response.status_code == 201
                continue
            assert response.status_code == 400 and f"{name} resolves to {ip}" in response.json()["error"], response.text
        rebound = f"http://rebind.test:{receiver.url.split(':')[2]}"  # the receiver's port, behind a public name
        webhook = requests.post(f"{base}/webhooks", json={"url": rebound, "events": ["task.finished"]}, timeout=10)
        assert webhook.status_code == 201
    finally:
        stop_process(web)
    hosts.write_text(hosts.read_text().replace("93.184.216.34 rebind.test", "127.0.0.1 rebind.test"))
    submit(app.test_client(), x=6, y=7)
    run_worker(app)
    clock = start("clock", tmp_path / "clock.log")
    try:
        client = app.test_client()
        wait_for(lambda: deliveries(client, webhook.json())[0]["last_error"], 20, "an attempt's outcome")
        error = deliveries(client, webhook.json())[0]["last_error"]
        assert error == "not sent: rebind.test resolves to 127.0.0.1, which is a loopback address", error
    finally:
        stop_process(clock)
    assert receiver.requests == []


def test_webhook_ids_must_be_canonical_and_known(client: FlaskClient) -> None:
    assert client.get(f"/webhooks/{uuid.uuid4()}").status_code == 404
    assert client.get("/webhooks/not-an-id/deliveries").status_code == 404
    assert client.get(f"/webhooks/{uuid.uuid4()}/deliveries?limit=0").status_code == 400
