"""GET /metrics: Prometheus's text format, right across the processes that did the work."""

from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import row, stop_process, submit, submit_failing, wait_for


def samples(client: FlaskClient) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain; version=0.0.4")
    return {(sample.name, *sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}  # fmt: skip


def test_metrics_count_what_every_process_did(app: Flask, client: FlaskClient, worker_process) -> None:
    ran = [submit(client, x=n, y=2) for n in range(2)]
    failed = submit_failing(app, failures=1, fault="data")  # fails for good: a deterministic failure
    wait_for(lambda: all(row(app, task_id) for task_id in [*ran, failed]), 30, "the tasks to end")
    assert samples(client)[("longjobs_workers",)] == 1
    stop_process(worker_process)  # the next task waits in its queue
    submit(client, x=1, y=1)
    found = samples(client)
    assert found[("longjobs_tasks_accepted_total", ("type", "multiply"))] == 3
    assert found[("longjobs_tasks_accepted_total", ("type", "flaky"))] == 1
    assert found[("longjobs_tasks_ended_total", ("status", "finished"), ("type", "multiply"))] == 2
    assert found[("longjobs_tasks_ended_total", ("status", "failed"), ("type", "flaky"))] == 1
    assert found[("longjobs_task_duration_seconds_count", ("type", "multiply"))] == 2
    assert found[("longjobs_task_duration_seconds_bucket", ("le", "+Inf"), ("type", "multiply"))] == 2
    assert found[("longjobs_task_duration_seconds_bucket", ("le", "1.0"), ("type", "multiply"))] == 2
    assert 0 <= found[("longjobs_task_duration_seconds_sum", ("type", "multiply"))] < 2
    assert [found[("longjobs_queue_depth", ("queue", name))] for name in ("high", "default", "low")] == [0, 1, 0]
    assert found[("longjobs_failed_jobs",)] == 1


def test_metrics_of_an_empty_service_are_zeros(client: FlaskClient) -> None:
    found = samples(client)
    assert found == {("longjobs_queue_depth", ("queue", name)): 0 for name in ("high", "default", "low")} | {
        ("longjobs_workers",): 0,
        ("longjobs_failed_jobs",): 0,
    }
