"""The API's baseline: bare Flask endpoints under the same gunicorn settings doing the same database and Redis
work as the service's. gunicorn serves `bench.baseline:create_app()`.
"""

import os
import uuid

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import text

from core import database_url

db = SQLAlchemy()


def create_app() -> Flask:
    """Bare endpoints: a durable submit (one INSERT, one enqueue) and a poll (one primary-key SELECT)."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(os.environ["DATABASE_URL"])
    db.init_app(app)
    queue = Queue("baseline", connection=Redis.from_url(os.environ["REDIS_URL"]), serializer=JSONSerializer)

    @app.post("/submit")
    def submit() -> tuple[dict, int]:
        task_id = str(uuid.uuid4())
        db.session.execute(text("INSERT INTO bench_tasks (task_id) VALUES (:id)"), {"id": task_id})
        db.session.commit()
        queue.enqueue("bench.row.insert_row", task_id, job_id=task_id)
        return {"task_id": task_id}, 202

    @app.get("/poll/<task_id>")
    def poll(task_id: str) -> dict:
        """One primary-key SELECT; for a task with no row yet, its job's status and meta, as a pending poll needs."""
        row = db.session.execute(text("SELECT result FROM results WHERE task_id = :id"), {"id": task_id}).first()
        if row is not None:
            return {"task_id": task_id, "result": row[0]}
        status, _ = queue.connection.hmget(Job.key_for(task_id), "status", "meta")
        return {"task_id": task_id, "status": status.decode() if status else None}

    return app
