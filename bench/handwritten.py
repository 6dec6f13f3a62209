"""The hand-written limit: `python -m bench.handwritten` pops task ids off a Redis list and commits one row
each, until the list stays empty for a second. It imports only redis and psycopg2, as such a loop would.
"""

import os

import psycopg2
from redis import Redis

QUEUE = "bench:handwritten"


def main() -> None:
    """BRPOP a task id, INSERT its row, commit."""
    redis = Redis.from_url(os.environ["REDIS_URL"])
    connection = psycopg2.connect(os.environ["DATABASE_URL"])
    while (item := redis.brpop(QUEUE, timeout=1)) is not None:
        with connection, connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_rows (task_id) VALUES (%s)", (item[1].decode(),))


if __name__ == "__main__":
    main()
