"""The migrations build the schema the models describe (the session fixture ran them on an empty database)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import inspect

from core import db


def test_migrations_create_the_results_table_as_the_models_describe_it(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        columns = {column["name"]: column for column in inspect(conn).get_columns("results")}
        assert str(columns["task_id"]["type"]) == "UUID"
        assert inspect(conn).get_pk_constraint("results")["constrained_columns"] == ["task_id"]
