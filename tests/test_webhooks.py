"""Webhooks: subscriptions, signed deliveries from the outbox in Postgres, retries, and the address guard.

Deliveries go to real HTTP receivers in this process, sent by the real Dispatcher (in a thread here, or the Procfile's
`clock`), and are verified with the standardwebhooks package, as a receiver would verify them.
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

import tasks
from core import Delivery, db
from longjobs.push import outbox
from tests.conftest import (
    app_fixture,
    free_port,
    row,
    service_env,
    start_process,
    stop_process,
    submit,
    submit_failing,
    wait_for,
)
from tests.receivers import Receiver, deliveries, dispatching, register
from tests.test_metrics import samples

app = app_fixture(WEBHOOK_ALLOWED_HOSTS="127.0.0.1", WEBHOOK_RETRY_SECONDS="1,1")


def test_an_ended_task_is_posted_signed_as_standard_webhooks_sign_it(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    webhook = register(client, receiver.url, "task.finished")
    assert webhook["secret"].startswith("whsec_") and webhook["events"] == ["task.finished"]
    task_id = submit(client, x=6, y=7)
    run_worker(app)
    wait_for(lambda: receiver.requests, 10, "the delivery")
    [event] = receiver.events(webhook["secret"])
    assert event["type"] == "task.finished"
    assert event["data"] == client.get(f"/tasks/{task_id}").json | {"result": 42.0}
    [(_, _, headers, _)] = receiver.requests
    assert headers["Content-Type"] == "application/json"
    # The receiver has the request before the dispatcher has its answer: wait for the outcome to be recorded.
    wait_for(lambda: deliveries(client, webhook)[0]["outcome"] == "delivered", 10, "the delivery's outcome")
    [delivery] = deliveries(client, webhook)
    assert delivery["message_id"] == headers["webhook-id"]
    assert (delivery["event"], delivery["task_id"], delivery["outcome"]) == ("task.finished", task_id, "delivered")
    assert (delivery["attempts"], delivery["last_status"], delivery["next_attempt_at"]) == (1, 200, None)
    listed = client.get("/webhooks").json["webhooks"]
    assert listed == [{name: webhook[name] for name in ("webhook_id", "url", "events", "created_at")}]  # no secret
    assert client.get(f"/webhooks/{webhook['webhook_id']}").json == listed[0]
    found = samples(client)
    assert found[("longjobs_webhook_deliveries_total", ("outcome", "delivered"))] == 1
    assert found[("longjobs_webhook_deliveries_waiting",)] == 0


def test_each_webhook_is_sent_the_events_it_takes(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    failures = register(client, receiver.url + "/failures", "task.failed", "task.canceled")
    successes = register(client, receiver.url + "/successes", "task.finished")
    finished = submit(client, x=1, y=2)
    failed = submit_failing(app, failures=1, fault="data")
    canceled = submit(client, x=1, y=3)
    assert client.delete(f"/tasks/{canceled}").status_code == 200
    run_worker(app)
    wait_for(lambda: len(receiver.requests) == 3, 10, "three deliveries")
    [success] = receiver.events(successes["secret"], "/hooks/successes")
    assert (success["type"], success["data"]["task_id"]) == ("task.finished", finished)
    sent = {event["type"]: event["data"] for event in receiver.events(failures["secret"], "/hooks/failures")}
    assert (sent["task.failed"]["task_id"], sent["task.canceled"]["task_id"]) == (failed, canceled)
    assert sent["task.failed"]["error"] == row(app, failed).error and "result" not in sent["task.failed"]
    assert sent["task.canceled"]["status"] == "canceled"
    assert [(d["event"], d["task_id"]) for d in deliveries(client, successes)] == [("task.finished", finished)]
    assert {(d["event"], d["task_id"]) for d in deliveries(client, failures)} == {
        ("task.failed", failed),
        ("task.canceled", canceled),
    }


def test_deliveries_to_a_receiver_share_a_connection_for_each_sender(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker
) -> None:
    webhook = register(client, receiver.url, "task.finished")
    tasks = {submit(client, x=n, y=1) for n in range(4 * outbox.SENDERS)}
    run_worker(app)
    with dispatching(app):  # all due at once: the senders send at the same time
        wait_for(lambda: len(receiver.requests) == len(tasks), 30, "every delivery")
    assert {event["data"]["task_id"] for event in receiver.events(webhook["secret"])} == tasks
    assert len(receiver.connections) <= outbox.SENDERS


def test_while_jobs_wait_deliveries_are_paced_and_catch_up_once_the_queues_are_empty(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker
) -> None:
    batch = outbox.PACED_BATCH  # claimed each PACE_SECONDS while jobs wait
    webhook = register(client, receiver.url, "task.finished")
    tasks = {submit(client, x=n, y=1) for n in range(3 * batch)}
    run_worker(app)
    waiting = submit(client, x=1, y=2)  # no worker takes it yet: the workers are behind
    started = time.monotonic()
    with dispatching(app):
        # One batch at first; the next PACE_SECONDS after it at the soonest (unpaced, 2 * SENDERS at once, and all in
        # a blink)
        time.sleep(max(0.0, started + 0.9 * outbox.PACE_SECONDS - time.monotonic()))
        assert len(receiver.requests) <= batch
        wait_for(lambda: len(receiver.requests) > batch, 30, "the next batch, while the job waits")
        run_worker(app)
        wait_for(lambda: len(receiver.requests) == len(tasks) + 1, 30, "every delivery, once the queues are empty")
    assert {event["data"]["task_id"] for event in receiver.events(webhook["secret"])} == tasks | {waiting}


def test_a_sweep_is_posted_once_its_last_run_ends(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    webhook = register(client, receiver.url, "sweep.finished")
    body = json.dumps({"model": "multiply", "params": {"y": 2}, "grid": {"x": [1, 2, 3]}})
    sweep_id = client.post("/sweeps", data=body).json["sweep_id"]
    run_worker(app)
    wait_for(lambda: receiver.requests, 10, "the delivery")
    time.sleep(1.5)  # a second delivery, were there one, would be under way by now
    [event] = receiver.events(webhook["secret"])
    assert event["type"] == "sweep.finished"
    assert event["data"] == client.get(f"/sweeps/{sweep_id}").json
    assert [run["result"] for run in event["data"]["runs"]] == [2.0, 4.0, 6.0]
    assert [(d["event"], d["sweep_id"], d["task_id"]) for d in deliveries(client, webhook)] == [
        ("sweep.finished", sweep_id, None)
    ]


def test_a_refused_delivery_is_tried_again_on_schedule_under_the_same_id(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    receiver.answers = [500, 503]
    webhook = register(client, receiver.url, "task.finished")
    submit(client, x=6, y=7)
    run_worker(app)
    wait_for(lambda: deliveries(client, webhook)[0]["outcome"] == "delivered", 20, "the third attempt")
    assert len(receiver.requests) == 3
    assert len({headers["webhook-id"] for _, _, headers, _ in receiver.requests}) == 1
    assert len({body for *_, body in receiver.requests}) == 1  # the same payload, signed anew each time
    assert all(event["type"] == "task.finished" for event in receiver.events(webhook["secret"]))
    moments = [moment for moment, *_ in receiver.requests]
    assert all(later - earlier >= 0.9 for earlier, later in zip(moments, moments[1:], strict=False))  # 1 s, 1 s
    [delivery] = deliveries(client, webhook)
    assert (delivery["attempts"], delivery["last_status"], delivery["last_error"]) == (3, 200, None)


def test_a_delivery_fails_for_good_once_its_retries_are_spent(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    receiver.answers = [500, 500, 500, 500]
    webhook = register(client, receiver.url, "task.finished")
    submit(client, x=6, y=7)
    run_worker(app)
    wait_for(lambda: deliveries(client, webhook)[0]["outcome"] == "failed", 20, "the retries to be spent")
    [delivery] = deliveries(client, webhook)
    assert (delivery["attempts"], delivery["last_status"], delivery["last_error"]) == (3, 500, "answered 500")
    assert delivery["next_attempt_at"] is None and len(receiver.requests) == 3
    found = samples(client)
    assert found[("longjobs_webhook_deliveries_total", ("outcome", "failed"))] == 1
    assert found[("longjobs_webhook_deliveries_total", ("outcome", "delivered"))] == 0


def test_a_receiver_that_hangs_is_tried_again_and_holds_up_no_task(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    receiver.answers = ["hang"]
    webhook = register(client, receiver.url, "task.finished")
    first = submit(client, x=1, y=1)
    run_worker(app)
    wait_for(lambda: receiver.requests, 10, "the first attempt")
    later = [submit(client, x=n, y=2) for n in range(5)]
    run_worker(app)  # while the receiver still hangs
    assert all(row(app, task_id).status == "finished" for task_id in later)

    def by_task() -> dict[str, dict]:
        return {delivery["task_id"]: delivery for delivery in deliveries(client, webhook)}

    # The others are delivered by the other senders while the first attempt still waits (for 10 s).
    wait_for(lambda: all(by_task()[task_id]["outcome"] == "delivered" for task_id in later), 8, "the others")
    assert (by_task()[first]["outcome"], by_task()[first]["attempts"]) == ("pending", 1)
    wait_for(lambda: by_task()[first]["outcome"] == "delivered", 25, "the hanging delivery's second attempt")
    assert by_task()[first]["attempts"] == 2


def test_a_redirect_is_not_followed(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    elsewhere = Receiver()
    try:
        receiver.answers = [("redirect", elsewhere.url)]
        webhook = register(client, receiver.url, "task.finished")
        submit(client, x=6, y=7)
        run_worker(app)
        wait_for(lambda: deliveries(client, webhook)[0]["outcome"] == "delivered", 15, "the second attempt")
        assert elsewhere.requests == [] and len(receiver.requests) == 2
    finally:
        elsewhere.close()


def test_a_receiver_outage_loses_no_event(app: Flask, client: FlaskClient, run_worker, dispatcher) -> None:
    port = free_port()
    webhook = register(client, f"http://127.0.0.1:{port}/hooks", "task.finished")
    submit(client, x=6, y=7)
    run_worker(app)
    # An attempt is counted once claimed, its error once it is over: wait for the error.
    wait_for(lambda: deliveries(client, webhook)[0]["last_error"], 10, "an attempt at a receiver that is down")
    assert "could not connect" in deliveries(client, webhook)[0]["last_error"]
    back = Receiver(port)
    try:
        wait_for(lambda: back.requests, 10, "the delivery once the receiver is back")
        assert back.events(webhook["secret"])[0]["type"] == "task.finished"
    finally:
        back.close()


def test_deleting_a_webhook_stops_its_pending_deliveries(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, dispatcher
) -> None:
    receiver.answers = [500, 500, 500]
    webhook = register(client, receiver.url, "task.finished")
    submit(client, x=6, y=7)
    run_worker(app)
    wait_for(lambda: receiver.requests, 10, "the first attempt")
    assert client.delete(f"/webhooks/{webhook['webhook_id']}").status_code == 204
    time.sleep(2.5)  # past both retries' backoff
    assert len(receiver.requests) == 1
    for path in (f"/webhooks/{webhook['webhook_id']}", f"/webhooks/{webhook['webhook_id']}/deliveries"):
        assert client.get(path).status_code == 404
    assert client.delete(f"/webhooks/{webhook['webhook_id']}").status_code == 404
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0  # deleted with it, not left behind


# Holds a webhook's delete open for a second once it has deleted its deliveries, as a slow commit would.
HOLD_DELETES = """
CREATE FUNCTION test_hold_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
CREATE TRIGGER test_hold_delete AFTER DELETE ON webhook_deliveries FOR EACH STATEMENT
EXECUTE FUNCTION test_hold_delete();
"""


def test_a_task_that_ends_while_its_webhook_is_deleted_is_recorded_without_a_delivery(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    """Without the delete's lock, the end saw the webhook the delete had not yet committed, and wrote a delivery for
    it after the delete had removed the webhook's: one that stays pending for good, for a webhook gone."""
    webhook = register(client, receiver.url, "task.finished")
    task_id = submit(client, x=6, y=7)  # no worker: the end is written below, as the worker writes it
    with app.app_context():
        db.session.execute(text(HOLD_DELETES))
        db.session.commit()
    deleted: list[int] = []
    deleting = threading.Thread(
        target=lambda: deleted.append(client.delete(f"/webhooks/{webhook['webhook_id']}").status_code)
    )
    try:
        deleting.start()
        with app.app_context():
            asleep = text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()"
            )
            wait_for(lambda: db.session.scalar(asleep), 10, "the delete to be under way")
            tasks.write_result(task_id, "multiply", "finished", result=42.0)
        deleting.join()
    finally:
        with app.app_context():
            db.session.execute(
                text("DROP TRIGGER test_hold_delete ON webhook_deliveries; DROP FUNCTION test_hold_delete()")
            )
            db.session.commit()
    assert deleted == [204]
    assert row(app, task_id).result == 42.0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_an_ended_task_is_delivered_whatever_redis_forgets(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker
) -> None:
    webhook = register(client, receiver.url, "task.finished")
    task_id = submit(client, x=6, y=7)
    run_worker(app)
    app.extensions["redis"].flushdb()  # before the delivery is sent: it waits in Postgres
    with dispatching(app):
        wait_for(lambda: receiver.requests, 10, "the delivery")
    assert receiver.events(webhook["secret"])[0]["data"]["task_id"] == task_id


@pytest.mark.slow
def test_a_delivery_whose_clock_died_is_sent_again_by_the_next(
    app: Flask, client: FlaskClient, receiver: Receiver, run_worker, tmp_path: Path
) -> None:
    receiver.answers = ["hang"]
    webhook = register(client, receiver.url, "task.finished")
    submit(client, x=6, y=7)
    run_worker(app)
    env = service_env(WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    clock = start_process("clock", tmp_path / "clock.log", **env)
    try:
        wait_for(lambda: receiver.requests, 20, "the first attempt")
    finally:
        stop_process(clock)  # SIGKILL, mid-attempt: its claim lapses, as nobody records the attempt
    assert deliveries(client, webhook)[0]["outcome"] == "pending"
    clock = start_process("clock", tmp_path / "clock-again.log", **env)
    try:
        wait_for(lambda: deliveries(client, webhook)[0]["outcome"] == "delivered", outbox.LEASE_SECONDS + 20,
                 "the next clock's attempt, once the dead one's claim lapsed")  # fmt: skip
    finally:
        stop_process(clock)
    assert len({headers["webhook-id"] for _, _, headers, _ in receiver.requests}) == 1


@pytest.mark.slow
@pytest.mark.parametrize("worker_process", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_a_task_run_again_after_its_worker_died_is_delivered_once(
    app: Flask, client: FlaskClient, receiver: Receiver, dispatcher, tmp_path: Path, worker_process
) -> None:
    webhook = register(client, receiver.url, "task.finished")
    task_id = submit(client, x=6, y=7, delay=3)
    wait_for(lambda: client.get(f"/tasks/{task_id}").json["status"] == "started", 20, "the task to start")
    os.killpg(worker_process.pid, signal.SIGKILL)  # the supervisor and its worker: a host restart
    worker_process.wait(timeout=10)
    again = start_process("worker", tmp_path / "worker-again.log", **service_env(WORKER_LIVENESS_SECONDS="4"))
    try:
        wait_for(lambda: row(app, task_id), 60, "the task to run again and end")
        wait_for(lambda: receiver.requests, 10, "the delivery")
        time.sleep(1.5)
    finally:
        stop_process(again)
    assert [event["data"]["task_id"] for event in receiver.events(webhook["secret"])] == [task_id]
