"""The one-row job (bench/row.py) for Huey, one of the queues the issue compares us with:
`huey_consumer bench.huey_job.huey -w 2 -k process` runs it on the bench's Redis database.
"""

import os

from huey import RedisHuey

from bench import row

huey = RedisHuey("bench", url=os.environ["REDIS_URL"])
insert_row = huey.task(name="insert_row")(row.insert_row)
