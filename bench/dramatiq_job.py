"""The one-row job (bench/row.py) for Dramatiq, one of the queues the issue compares us with:
`dramatiq bench.dramatiq_job -p 2 -t 8` runs it on the bench's Redis database.
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench import row

dramatiq.set_broker(RedisBroker(url=os.environ["REDIS_URL"]))
insert_row = dramatiq.actor(row.insert_row, actor_name="insert_row", max_retries=0)
