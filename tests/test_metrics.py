"""GET /metrics: Prometheus's text format, right across the processes that did the work."""

from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

import tasks
from tests.conftest import row, submit, submit_failing, wait_for


def samples(client: FlaskClient) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain; version=0.0.4")
    return {(sample.name, *sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}  # fmt: skip


def test_metrics_count_what_every_process_did(app: Flask, client: FlaskClient, worker_process) -> None:
    ran = [submit(client, x=n, y=2) for n in range(2)]
    failed = submit_failing(app, failures=1, fault="data")  # fails for good: a deterministic failure
    wait_for(lambda: all(row(app, task_id) for task_id in [*ran, failed]), 30, "the tasks to end")
    # RQ writes a failed job's row (its failure callback) before it adds the job to the failed registry.
    failed_jobs = app.extensions["queues"]["default"].failed_job_registry
    wait_for(lambda: failed_jobs.count == 1, 10, "the failed job to reach the failed registry")
    found = samples(client)
    assert found[("longjobs_tasks_accepted_total", ("type", "multiply"))] == 2
    assert found[("longjobs_tasks_accepted_total", ("type", "flaky"))] == 1
    assert found[("longjobs_tasks_ended_total", ("status", "finished"), ("type", "multiply"))] == 2
    assert found[("longjobs_tasks_ended_total", ("status", "failed"), ("type", "flaky"))] == 1
    assert found[("longjobs_task_duration_seconds_count", ("type", "multiply"))] == 2
    assert found[("longjobs_task_duration_seconds_bucket", ("le", "+Inf"), ("type", "multiply"))] == 2
    assert found[("longjobs_task_duration_seconds_bucket", ("le", "1.0"), ("type", "multiply"))] == 2
    assert 0 <= found[("longjobs_task_duration_seconds_sum", ("type", "multiply"))] < 2
    assert (found[("longjobs_workers",)], found[("longjobs_failed_jobs",)]) == (1, 1)


def test_metrics_read_the_queues(client: FlaskClient) -> None:
    """No worker runs: the tasks wait in their queues."""
    empty = samples(client)
    assert empty == {("longjobs_queue_depth", ("queue", name)): 0 for name in ("high", "default", "low")} | {
        ("longjobs_workers",): 0,
        ("longjobs_failed_jobs",): 0,
        ("longjobs_webhook_deliveries_total", ("outcome", "delivered")): 0,
        ("longjobs_webhook_deliveries_total", ("outcome", "failed")): 0,
        ("longjobs_webhook_deliveries_waiting",): 0,
    }
    submit(client, "/multiply?priority=high", x=1, y=1)
    submit(client, x=1, y=1)
    submit(client, x=2, y=1)
    found = samples(client)
    assert [found[("longjobs_queue_depth", ("queue", name))] for name in ("high", "default", "low")] == [1, 2, 0]
    assert found[("longjobs_tasks_accepted_total", ("type", "multiply"))] == 3
    assert not any(key[0].startswith("longjobs_tasks_ended") for key in found)


def test_each_end_is_counted_once_and_a_task_that_never_ran_has_no_duration(app: Flask, client: FlaskClient) -> None:
    canceled = submit(client, x=1, y=2)
    assert client.delete(f"/tasks/{canceled}").status_code == 200  # it never started
    twice = submit(client, x=1, y=3)
    with app.app_context():  # a job that ran twice writes its outcome twice; a requeued one ends anew
        for status in ("failed", "failed", "finished", "finished"):
            tasks.write_result(twice, "multiply", status, result=3.0, started_at=datetime.now(UTC))
    found = samples(client)
    ended = {status: found.get(("longjobs_tasks_ended_total", ("status", status), ("type", "multiply")))
             for status in ("canceled", "failed", "finished")}  # fmt: skip
    assert ended == {"canceled": 1, "failed": 1, "finished": 1}
    assert found[("longjobs_task_duration_seconds_count", ("type", "multiply"))] == 2  # the canceled one has none
