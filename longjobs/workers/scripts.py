"""The worker's Lua scripts: RQ's per-job bookkeeping in one round trip per job, not several; and a job's progress.

Imports nothing of ours. Each script is registered (EVALSHA) and touches only the keys passed in KEYS, as
RQ's own rq/scripts.py does; the key layout and hash fields are RQ 2.12's, checked at start-up (rqinternals.py),
and tests/test_equivalence.py compares the state they leave with the state RQ's own SimpleWorker leaves.
"""

from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError

# Start the job at the head of the queues, as RQ's worker starts the job its dequeue pops, in one step: off its queue,
# and the state RQ writes in its two preparation pipelines (job, execution, started registry, worker; Job.perform's
# PERSIST). The ids come from the worker's last look at the head of the first non-empty queue (the candidates): the
# head of the queues (KEYS[4..], in priority order) is started only if it is one of them, and so whatever went to the
# head since (a job in a queue of higher priority, one pushed to the front) is never passed over. A job whose hash is
# gone is dropped from the queue as RQ's dequeue drops it. Nothing is taken while workers are suspended (KEYS[2]).
# With `given` set, the one candidate was popped already by RQ's own blocking dequeue: it is started if it still reads
# queued (and taken off its queue, where a watchman may have put it back since: RELIST).
# KEYS: worker, suspended, the candidates' started registry, the queues, then per candidate its hash, its new
# execution's hash and its executions registry. ARGV: worker name, the take's stamp as RQ writes it and as a timestamp,
# the candidates' queue (its index among the queues), the number of queues, given (1 or 0), the new execution's id,
# then the candidates' ids.
# Returns {index of the candidate started, its hash}; 0 when none is at the head (the worker looks again); -1 while
# workers are suspended.
TAKE = """
local worker, stamp, now, from, queues, given, execution = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]),
  tonumber(ARGV[5]), ARGV[6], ARGV[7]
local function start(c)
  local id = ARGV[8 + c]
  local job_key, execution_key, executions_key = unpack(KEYS, 4 + queues + 3 * c, 6 + queues + 3 * c)
  local at = math.floor(tonumber(now))
  local timeout = tonumber(redis.call('HGET', job_key, 'timeout'))
  local ttl = 480  -- RQ's heartbeat TTL: the job's timeout + 60 s, 420 s for a job that never times out
  if timeout == -1 then ttl = 420 elseif timeout then ttl = timeout + 60 end
  redis.call('HSET', execution_key, 'id', execution, 'created_at', now, 'last_heartbeat', now, 'worker_name', worker)
  redis.call('EXPIRE', execution_key, ttl)
  redis.call('ZADD', executions_key, at + ttl + 60, execution)
  redis.call('EXPIRE', executions_key, ttl + 60)
  redis.call('ZADD', KEYS[3], at + ttl, id .. ':' .. execution)
  redis.call('PERSIST', job_key)
  redis.call('HSET', job_key, 'last_heartbeat', stamp, 'status', 'started', 'started_at', stamp, 'worker_name', worker)
  redis.call('HSET', KEYS[1], 'state', 'busy', 'current_job', id, 'current_job_working_time', 0,
             'last_heartbeat', stamp)
  redis.call('EXPIRE', KEYS[1], ttl)
  return {c, redis.call('HGETALL', job_key)}
end
if given == '1' then
  redis.call('LREM', KEYS[3 + from], 1, ARGV[8])
  -- gone, canceled, or put back and started by another worker meanwhile
  if redis.call('HGET', KEYS[4 + queues], 'status') ~= 'queued' then return 0 end
  return start(0)
end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local candidates = {}
for c = 0, #ARGV - 8 do candidates[ARGV[8 + c]] = c end
for q = 1, queues do
  while true do
    local head = redis.call('LINDEX', KEYS[3 + q], 0)
    if not head then break end
    local c = candidates[head]
    if q ~= from or c == nil then return 0 end
    redis.call('LPOP', KEYS[3 + q])
    if redis.call('EXISTS', KEYS[4 + queues + 3 * c]) == 1 then return start(c) end
  end
end
return 0
"""

# Give back to its queue KEYS[2] a job (KEYS[1]) that reads queued but is not there: a worker popped it and stopped
# before starting it (RQ turns a SIGTERM then into an exception). Atomic with TAKE, which takes it out of the queue
# again if its worker starts it after all.
RELIST = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
if redis.call('LPOS', KEYS[2], ARGV[1]) then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
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

# A running job's meta (its progress), written as Job.save_meta writes it, but only while the job's hash exists: once
# Redis has lost the job (a FLUSHALL, a failover), save_meta's HSET makes a hash of meta alone, which RQ's Job.fetch
# refuses ("Unexpected job format") and which nothing expires. KEYS: the job's hash. ARGV: the serialized meta.
SAVE_META = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'meta', ARGV[1]) end
"""

Call = tuple[Script, list, list]


class Scripts:
    """The scripts, registered on a connection. In a pipeline they run by EVALSHA alone (redis-py's own pipeline
    scripts cost a SCRIPT EXISTS round trip per pipeline): a script the server does not know yet did not run, and
    runs again, loaded, after the pipeline."""

    def __init__(self, connection: Redis) -> None:
        self.take, self.relist, self.finish = (connection.register_script(source) for source in (TAKE, RELIST, FINISH))

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
