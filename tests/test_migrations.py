"""The migrations build the schema the models describe (the session fixture ran them on an empty database),
and upgrade a database that holds rows."""

import uuid

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import inspect, make_url, text

from core import db
from tests.conftest import app_on, recreate_database


def test_migrations_create_the_results_table_as_the_models_describe_it(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        columns = {column["name"]: column for column in inspect(conn).get_columns("results")}
        assert str(columns["task_id"]["type"]) == "UUID"
        assert inspect(conn).get_pk_constraint("results")["constrained_columns"] == ["task_id"]


def test_the_lifecycle_migration_keeps_rows_written_before_it(migrated_database: str) -> None:
    url = make_url(migrated_database)
    url = url.set(database=f"{url.database}_upgrade").render_as_string(hide_password=False)
    recreate_database(url)
    finished, failed = uuid.uuid4(), uuid.uuid4()
    with app_on(DATABASE_URL=url) as app:
        with app.app_context():
            flask_migrate.upgrade(revision="0001")
            db.session.execute(
                text(
                    "INSERT INTO results (task_id, status, result, error, finished_at) VALUES "
                    "(:finished, 'finished', 6.5, NULL, '2026-01-02T03:04:05+00'), "
                    "(:failed, 'failed', NULL, 'it broke', '2026-01-03T00:00:00+00')"
                ),
                {"finished": finished, "failed": failed},
            )
            db.session.commit()
            flask_migrate.upgrade()
            db.session.remove()
        client = app.test_client()
        assert client.get(f"/multiply/{finished}").json == {
            "task_id": str(finished),
            "status": "finished",
            "params": {},
            "result": 6.5,
        }
        assert client.get(f"/multiply/{failed}").json == {
            "task_id": str(failed),
            "status": "failed",
            "params": {},
            "error": "it broke",
        }
        view = client.get(f"/tasks/{finished}").json
        assert (view["type"], view["status"], view["ended_at"]) == ("multiply", "finished", "2026-01-02T03:04:05+00:00")
        assert [task["task_id"] for task in client.get("/tasks").json["tasks"]] == [str(failed), str(finished)]
        with app.app_context():
            flask_migrate.downgrade(revision="0001")
            assert db.session.execute(text("SELECT result FROM results WHERE status = 'finished'")).scalar() == 6.5
            db.session.remove()
