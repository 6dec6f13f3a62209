"""GET /health, and the OpenAPI document and interactive docs generated from the request schemas."""

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from tests.conftest import app_on, closed_port_url


def test_health_reports_redis_database_workers_queues_and_failures(app: Flask, client: FlaskClient) -> None:
    client.post("/multiply?priority=low", json={"x": 1, "y": 2})
    client.post("/multiply?priority=low", json={"x": 1, "y": 2})
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {
        "redis": {"ok": True},
        "database": {"ok": True},
        "workers": 0,
        "queues": {"high": 0, "default": 0, "low": 2},
        "failed": 0,
    }


def test_health_counts_live_workers(client: FlaskClient, worker_process) -> None:
    assert client.get("/health").json["workers"] == 1


def test_health_is_503_when_redis_is_down(app_without_redis: Flask) -> None:
    response = app_without_redis.test_client().get("/health")
    assert response.status_code == 503
    assert response.json["redis"]["ok"] is False
    assert "Connection" in response.json["redis"]["error"]
    assert response.json["database"] == {"ok": True}


def test_health_is_503_when_the_database_is_down(migrated_database: str) -> None:
    with app_on(DATABASE_URL=closed_port_url("postgresql", "longjobs")) as app:
        response = app.test_client().get("/health")
        assert response.status_code == 503
        assert response.json["database"]["ok"] is False
        assert response.json["redis"] == {"ok": True}


def test_the_openapi_document_is_valid_and_covers_every_endpoint(app: Flask, client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    validate(document)
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    per_model = {(f"/models/{name}", "post") for name in app.extensions["models"]}
    per_model |= {(f"/models/{name}/{{task_id}}", "get") for name in app.extensions["models"]}
    assert operations == per_model | {
        ("/multiply", "post"),
        ("/multiply/{task_id}", "get"),
        ("/simulations", "post"),
        ("/simulations/{task_id}", "get"),
        ("/models", "get"),
        ("/tasks", "get"),
        ("/tasks/{task_id}", "get"),
        ("/tasks/{task_id}", "delete"),
        ("/sweeps", "post"),
        ("/sweeps/{sweep_id}", "get"),
        ("/sweeps/{sweep_id}", "delete"),
        ("/schedules", "post"),
        ("/schedules", "get"),
        ("/schedules/{schedule_id}", "get"),
        ("/schedules/{schedule_id}", "delete"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/tasks/{task_id}/events", "get"),
        ("/webhooks", "post"),
        ("/webhooks", "get"),
        ("/webhooks/{webhook_id}", "get"),
        ("/webhooks/{webhook_id}", "delete"),
        ("/webhooks/{webhook_id}/deliveries", "get"),
    }
    events = document["paths"]["/tasks/{task_id}/events"]["get"]["responses"]["200"]
    assert list(events["content"]) == ["text/event-stream"]
    submit = document["paths"]["/multiply"]["post"]
    assert set(submit["responses"]) == {"202", "400", "413", "422", "503"}
    parameters = {parameter["name"] for parameter in submit["parameters"]}
    assert {"priority", "Idempotency-Key"} <= parameters
    schema = document["components"]["schemas"]["multiply_params"]
    assert schema["properties"]["x"]["maximum"] == 10**150
    assert schema["additionalProperties"] is False


def test_the_docs_group_each_models_operations_with_its_own_schema_and_an_example(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    for name in ("multiply", "simulation", "enkf"):
        operation = document["paths"][f"/models/{name}"]["post"]
        assert operation["tags"] == [name]
        media = operation["requestBody"]["content"]["application/json"]
        assert media["schema"] == {"$ref": f"#/components/schemas/{name}_params"}
        schema = document["components"]["schemas"][f"{name}_params"]
        assert set(media["example"]) <= set(schema["properties"])
        assert set(schema["required"]) <= set(media["example"])
        assert document["paths"][f"/models/{name}/{{task_id}}"]["get"]["tags"] == [name]
    assert {tag["name"] for tag in document["tags"]} >= {"multiply", "simulation", "enkf", "tasks", "models"}
    assert all(operation.get("tags") for item in document["paths"].values() for operation in item.values())


def test_the_docs_page_loads_nothing_from_another_site(client: FlaskClient) -> None:
    assert client.get("/docs").headers["Location"].endswith("/docs/swagger")
    page = client.get("/docs/swagger")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for asset in re.findall(r"(?:src|href)=\"([^\"]+)\"", html):
        with client.get(f"/docs/{asset}") as response:  # a file response: closed when done
            assert response.status_code == 200, asset
