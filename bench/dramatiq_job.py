"""The one-row job for Dramatiq, one of the queues the issue compares us with: `dramatiq bench.dramatiq_job
-p 2 -t 8` runs it on the bench's Redis database, each thread with a psycopg2 connection of its own.
"""

import os
import threading

import dramatiq
import psycopg2
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["REDIS_URL"]))
_local = threading.local()


@dramatiq.actor(max_retries=0)
def insert_row(task_id: str) -> None:
    """One INSERT, one commit."""
    if not hasattr(_local, "connection"):
        _local.connection = psycopg2.connect(os.environ["DATABASE_URL"])
    with _local.connection, _local.connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_rows (task_id) VALUES (%s) ON CONFLICT (task_id) DO NOTHING", (task_id,))
