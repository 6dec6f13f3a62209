"""The one-row job every queue in the bench runs (RQ, Dramatiq, Huey): one INSERT, one commit, on a psycopg2
connection of each thread's own. Imports only psycopg2.
"""

import os
import threading

import psycopg2

_local = threading.local()


def insert_row(task_id: str) -> None:
    """One INSERT, one commit."""
    if not hasattr(_local, "connection"):
        _local.connection = psycopg2.connect(os.environ["DATABASE_URL"])
    with _local.connection, _local.connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_rows (task_id) VALUES (%s) ON CONFLICT (task_id) DO NOTHING", (task_id,))
