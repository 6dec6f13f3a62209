"""GET /tasks: recent tasks newest first, filtered, a page at a time."""

import pytest
from flask import Flask
from flask.testing import FlaskClient

SIMULATION = {"population": 100, "initial_infected": 1, "r0": 0, "incubation_days": 2, "infectious_days": 3}


def all_pages(client: FlaskClient, query: str) -> list[dict]:
    tasks, cursor = [], None
    for _ in range(50):
        page = client.get(f"/tasks?{query}" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status_code == 200, page.json
        tasks += page.json["tasks"]
        cursor = page.json["next_cursor"]
        if cursor is None:
            return tasks
    pytest.fail("pagination did not end")


def test_tasks_are_listed_newest_first_across_pages(app: Flask, client: FlaskClient, run_worker) -> None:
    ids = [client.post("/multiply", json={"x": n, "y": 1}).json["task_id"] for n in range(7)]
    run_worker(app)
    ids += [client.post("/simulations", json=SIMULATION | {"days": 5, "runs": 1}).json["task_id"] for _ in range(2)]
    listed = all_pages(client, "limit=2")
    assert [task["task_id"] for task in listed] == ids[::-1]
    assert len(client.get("/tasks?limit=2").json["tasks"]) == 2
    assert client.get("/tasks").json["next_cursor"] is None  # 9 tasks fit the default page


def test_tasks_are_filtered_by_status_and_type(app: Flask, client: FlaskClient, run_worker) -> None:
    done = [client.post("/multiply", json={"x": n, "y": 1}).json["task_id"] for n in range(3)]
    run_worker(app)
    queued = [client.post("/multiply", json={"x": n, "y": 1}).json["task_id"] for n in range(4)]
    simulation = client.post("/simulations", json=SIMULATION | {"days": 5, "runs": 1}).json["task_id"]
    canceled = client.post("/multiply", json={"x": 1, "y": 1}).json["task_id"]
    assert client.delete(f"/tasks/{canceled}").status_code == 200

    assert [t["task_id"] for t in all_pages(client, "status=finished&limit=2")] == done[::-1]
    assert [t["task_id"] for t in all_pages(client, "status=queued&limit=3")] == [simulation, *queued[::-1]]
    assert [t["task_id"] for t in all_pages(client, "status=queued&type=multiply&limit=2")] == queued[::-1]
    assert [t["task_id"] for t in all_pages(client, "type=simulation")] == [simulation]
    assert [t["task_id"] for t in all_pages(client, "status=canceled")] == [canceled]
    assert all_pages(client, "status=started") == []


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=ten", "status=done", "type=Divide!", "cursor=nonsense", "cursor=", "sort=asc"],
)
def test_bad_list_queries_are_400(client: FlaskClient, query: str) -> None:
    response = client.get(f"/tasks?{query}")
    assert response.status_code == 400
    assert set(response.json) == {"error"}
