"""The README's "Watch it" examples work when pasted: its webhook receiver verifies and prints real deliveries, and its
Prometheus alert rules name metrics that /metrics serves."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ROOT, free_port, submit, wait_for
from tests.test_metrics import samples
from tests.test_webhooks import app  # noqa: F401  # the fixture: a receiver on 127.0.0.1 let in

SECTION = (ROOT / "README.md").read_text().split("## Watch it", 1)[1].split("\n## ", 1)[0]


def block(language: str) -> str:
    [code] = re.findall(rf"```{language}\n(.*?)```", SECTION, flags=re.DOTALL)
    return code


@pytest.mark.slow
def test_the_readme_receiver_verifies_and_prints_each_delivery(
    app: Flask,  # noqa: F811
    client: FlaskClient,
    run_worker,
    dispatcher,  # noqa: F811
    tmp_path: Path,
) -> None:
    port = free_port()
    (tmp_path / "receiver.py").write_text(block("python").replace("8000", str(port)))
    webhook = client.post("/webhooks", json={"url": f"http://127.0.0.1:{port}/", "events": ["task.finished"]}).json
    out = (tmp_path / "out").open("w")
    receiver = subprocess.Popen([sys.executable, "receiver.py", webhook["secret"]], cwd=tmp_path, stdout=out,
                                stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: receiver.poll() is None and _answers(port), 10, "the receiver to listen")
        forged = requests.post(
            f"http://127.0.0.1:{port}/",
            data=b"{}",
            timeout=5,
            headers={"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
        )
        assert forged.status_code == 400
        task_id = submit(client, x=6, y=7)
        run_worker(app)
        wait_for(lambda: (tmp_path / "out").read_text(), 15, "the receiver to print the delivery")
        assert (tmp_path / "out").read_text() == f"task.finished {task_id} finished\n"
    finally:
        receiver.kill()
        receiver.wait(timeout=10)
        out.close()


def _answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except requests.RequestException:
        return False


def test_the_readme_alert_rules_name_metrics_that_are_served(client: FlaskClient) -> None:
    config = yaml.safe_load(block("yaml"))
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["localhost:5000"]
    assert client.delete(f"/tasks/{submit(client, x=1, y=2)}").status_code == 200  # a task ended: canceled
    served = {name for name, *_ in samples(client)}
    rules = config["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == ["TasksFailing", "QueueBackedUp"]
    for rule in rules:
        named = set(re.findall(r"longjobs_\w+", rule["expr"]))
        assert named and named <= served, rule["expr"]
