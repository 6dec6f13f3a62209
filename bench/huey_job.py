"""The one-row job for Huey, one of the queues the issue compares us with: `huey_consumer bench.huey_job.huey
-w 2 -k process` runs it on the bench's Redis database, each process with a psycopg2 connection of its own.
"""

import os

import psycopg2
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["REDIS_URL"])
_connection = None


@huey.task()
def insert_row(task_id: str) -> None:
    """One INSERT, one commit."""
    global _connection
    if _connection is None:
        _connection = psycopg2.connect(os.environ["DATABASE_URL"])
    with _connection, _connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_rows (task_id) VALUES (%s) ON CONFLICT (task_id) DO NOTHING", (task_id,))
