"""The worker's Lua scripts: RQ's per-job bookkeeping written in one round trip per batch, not several per job.

Imports nothing of ours. Each script is registered (EVALSHA) and touches only the keys passed in KEYS, as
RQ's own rq/scripts.py does; the key layout and hash fields are RQ 2.12's, checked at start-up (rqinternals.py),
and tests/test_equivalence.py compares the state they leave with the state RQ's own SimpleWorker leaves.
"""

from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

# Move up to ARGV[1] job ids from the queues (KEYS[2], KEYS[4], ... in priority order) to each queue's intermediate
# list (KEYS[3], KEYS[5], ...), as RQ's own dequeue does (LMOVE): RQ's maintenance fails a job a dead worker left
# there. Nothing moves while workers are suspended (KEYS[1], `rq suspend`). Returns {queue key, id} pairs.
CLAIM = """
local claimed = {}
if redis.call('EXISTS', KEYS[1]) == 1 then return claimed end
for i = 2, #KEYS, 2 do
  while #claimed < tonumber(ARGV[1]) do
    local id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
    if not id then break end
    table.insert(claimed, {KEYS[i], id})
  end
end
return claimed
"""

# Mark jobs started: the state RQ's worker writes in its two preparation pipelines (job, execution, started registry,
# worker; Job.perform's PERSIST), and the job off its intermediate list. KEYS[1] is the worker; then per job its
# hash, execution hash, executions registry, started registry, intermediate list and queue. ARGV: worker name, the
# take's stamp as RQ writes it and as a timestamp, then per job its id, a new execution id, and 1 if CLAIM took it (0:
# RQ's own dequeue popped it, and a watchman may have given it back to its queue since: RELIST). A claimed job that
# is no longer on its intermediate list was given back meanwhile (UNCLAIM) and is not started; nor is a job whose
# hash is gone, as RQ skips it. Returns {index of the job, its hash} for each job started.
START = """
local worker, stamp, now = ARGV[1], ARGV[2], ARGV[3]
local at = math.floor(tonumber(now))
local started, longest = {}, 0
for i = 0, (#KEYS - 1) / 6 - 1 do
  local job_key, execution_key, executions_key, started_key, intermediate_key, queue_key =
    unpack(KEYS, 2 + 6 * i, 7 + 6 * i)
  local id, execution, claimed = ARGV[4 + 3 * i], ARGV[5 + 3 * i], ARGV[6 + 3 * i]
  local ours = redis.call('LREM', intermediate_key, 1, id) == 1
  if claimed == '0' then ours = true; redis.call('LREM', queue_key, 1, id) end
  if ours and redis.call('EXISTS', job_key) == 1 then
    local timeout = tonumber(redis.call('HGET', job_key, 'timeout'))
    local ttl = 480  -- RQ's heartbeat TTL: the job's timeout + 60 s, 420 s for a job that never times out
    if timeout == -1 then ttl = 420 elseif timeout then ttl = timeout + 60 end
    longest = math.max(longest, ttl)
    redis.call('HSET', execution_key, 'id', execution, 'created_at', now, 'last_heartbeat', now, 'worker_name', worker)
    redis.call('EXPIRE', execution_key, ttl)
    redis.call('ZADD', executions_key, at + ttl + 60, execution)
    redis.call('EXPIRE', executions_key, ttl + 60)
    redis.call('ZADD', started_key, at + ttl, id .. ':' .. execution)
    redis.call('PERSIST', job_key)
    redis.call('HSET', job_key, 'last_heartbeat', stamp, 'status', 'started', 'started_at', stamp,
               'worker_name', worker)
    table.insert(started, {i, redis.call('HGETALL', job_key)})
  end
end
if #started > 0 then
  redis.call('HSET', KEYS[1], 'state', 'busy', 'current_job', ARGV[4 + 3 * started[1][1]],
             'current_job_working_time', 0, 'last_heartbeat', stamp)
  redis.call('EXPIRE', KEYS[1], longest)
end
return started
"""

# Give back to its queue KEYS[2] a job (KEYS[1]) that reads queued but is neither there nor on the queue's intermediate
# list KEYS[3]: a worker popped it and stopped before starting it (RQ turns a SIGTERM then into an exception). Atomic
# with START, which takes it out of the queue again if its worker starts it after all.
RELIST = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
if redis.call('LPOS', KEYS[2], ARGV[1]) or redis.call('LPOS', KEYS[3], ARGV[1]) then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""

# Give back a job a worker claimed but never started (it died, or lost its connection, between CLAIM and START):
# off its intermediate list KEYS[1], to the front of its queue KEYS[2], forgetting when RQ's maintenance first saw it
# there (KEYS[3]). Atomic with START: the job is either started by its worker or back in its queue, never both.
UNCLAIM = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""

# A job's success as RQ's worker records it (Worker.handle_job_success): worker counters, the job's status and end,
# its Result in the job's results stream (fields from ARGV[7] on, as Result.serialize makes them) and the finished
# registry, the job and its dependents and dependencies sets kept ARGV[3] seconds (0: deleted at once; negative: kept
# for good), and the execution cleaned up. KEYS: worker, job hash, results stream, finished registry, execution hash,
# started registry, executions registry, the job's dependents and dependencies. ARGV: id, execution id, ttl, end
# stamp, seconds worked, end timestamp. Returns 1 when the job has dependents: the worker then queues them and cleans
# the job up as RQ does (Queue.enqueue_dependents, Job.cleanup), so a job deleted at once is deleted after that.
# An execution no longer in the started registry is recorded already (a round trip sent again after its reply was
# lost) or was taken for abandoned by RQ's maintenance: nothing is written twice.
FINISH = """
local id, execution, ttl, ended, working, now = unpack(ARGV, 1, 6)
if not redis.call('ZSCORE', KEYS[6], id .. ':' .. execution) then return 0 end
ttl = tonumber(ttl)
local dependents = redis.call('EXISTS', KEYS[8])
redis.call('HINCRBY', KEYS[1], 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', KEYS[1], 'total_working_time', working)
if redis.call('HGET', KEYS[1], 'current_job') == id then redis.call('HDEL', KEYS[1], 'current_job') end
if ttl == 0 then
  if dependents == 0 then redis.call('DEL', KEYS[2], KEYS[9]) end
else
  redis.call('HSET', KEYS[2], 'status', 'finished', 'ended_at', ended)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10, '*', unpack(ARGV, 7))
  if ttl > 0 then
    for _, key in ipairs({KEYS[2], KEYS[3], KEYS[8], KEYS[9]}) do redis.call('EXPIRE', key, ttl) end
    redis.call('ZADD', KEYS[4], math.floor(tonumber(now)) + ttl, id)
  else  -- a negative ttl keeps the job and its result for good, in the registry for good, as RQ does
    redis.call('ZADD', KEYS[4], '+inf', id)
  end
end
redis.call('DEL', KEYS[5])
redis.call('ZREM', KEYS[6], id .. ':' .. execution)
redis.call('ZREM', KEYS[7], execution)
return dependents
"""


Call = tuple[Script, list, list]


class Scripts:
    """The scripts, registered on a connection. In a pipeline they run by EVALSHA alone (redis-py's own pipeline
    scripts cost a SCRIPT EXISTS round trip per pipeline): a script the server does not know yet did not run, and
    runs again, loaded, after the pipeline."""

    def __init__(self, connection: Redis) -> None:
        self.claim, self.start, self.unclaim, self.relist, self.finish = (
            connection.register_script(source) for source in (CLAIM, START, UNCLAIM, RELIST, FINISH)
        )

    @staticmethod
    def call(pipeline: Pipeline, calls: dict[int, Call], script: Script, keys: list, args: list) -> int:
        """Queue a script in the pipeline by its digest, noting it in `calls`; returns the index of its reply."""
        index = len(pipeline.command_stack)
        pipeline.evalsha(script.sha, len(keys), *keys, *args)
        calls[index] = (script, keys, args)
        return index

    @staticmethod
    def execute(pipeline: Pipeline, calls: dict[int, Call]) -> list[Any]:
        """Run the pipeline, and again each script of `calls` the server did not know."""
        replies = pipeline.execute(raise_on_error=False)
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError) and index in calls:
                script, keys, args = calls[index]
                replies[index] = script(keys, args)
            elif isinstance(reply, Exception):
                raise reply
        return replies
