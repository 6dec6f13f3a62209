"""The RQ internals the worker leans on, in one place, and the guard that allows its fast path.

Imports nothing of ours. The fast path (fastworker.FastWorker, scripts.py) writes RQ's bookkeeping itself, so it holds
only with the RQ it was proven against: `fast_path_refusal` names the RQ version and key layout that
tests/test_equivalence.py compares with RQ's own SimpleWorker, and the worker runs RQ's own code paths when either
differs (or when WORKER_FAST_PATH is off). Every private name of RQ's that this code reads or writes is below.
"""

from typing import Any

import rq
from redis import Redis
from rq import Queue, Worker
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.suspension import WORKERS_SUSPENDED
from rq.worker import BaseWorker, WorkerStatus

PROVEN_RQ_VERSION = "2.12.0"
# The keys scripts.py writes, as RQ 2.12 names them; `layout` builds them for a job, a queue and a worker.
PROVEN_LAYOUT = {
    "job": "rq:job:{job}",
    "dependents": "rq:job:{job}:dependents",
    "dependencies": "rq:job::{job}:dependencies",  # sic: RQ 2.12's own name
    "results": "rq:results:{job}",
    "execution": "rq:execution:{job}:{execution}",
    "executions": "rq:executions:{job}",
    "queue": "rq:queue:{queue}",
    "intermediate": "rq:queue:{queue}:intermediate",
    "started": "rq:wip:{queue}",
    "finished": "rq:finished:{queue}",
    "worker": "rq:worker:{worker}",
    "suspended": "rq:suspended",
}


def rq_layout(connection: Redis, job: str, queue: str, execution: str, worker: str) -> dict[str, str]:
    """The same keys, as the installed RQ names them (building them sends nothing to the server)."""
    return {
        "job": Job.key_for(job),
        "dependents": Job.dependents_key_for(job),
        "dependencies": Job(job, connection).dependencies_key,
        "results": Result.get_key(job),
        "execution": Execution(execution, job, connection).key,
        "executions": ExecutionRegistry(job, connection).key,
        "queue": Queue(queue, connection=connection).key,
        "intermediate": Queue(queue, connection=connection).intermediate_queue_key,
        "started": StartedJobRegistry(queue, connection=connection).key,
        "finished": FinishedJobRegistry(queue, connection=connection).key,
        "worker": Worker.redis_worker_namespace_prefix + worker,
        "suspended": WORKERS_SUSPENDED,
    }


def fast_path_refusal(connection: Redis) -> str | None:
    """Why the fast path may not run with the installed RQ, or None when it may."""
    if rq.VERSION != PROVEN_RQ_VERSION:
        return f"RQ {rq.VERSION} is installed; the fast path was proven against RQ {PROVEN_RQ_VERSION}"
    names = {"job": "j", "queue": "q", "execution": "e", "worker": "w"}
    proven = {kind: template.format(**names) for kind, template in PROVEN_LAYOUT.items()}
    if (installed := rq_layout(connection, **names)) != proven:
        changed = sorted(kind for kind in proven if proven[kind] != installed[kind])
        return f"RQ's key layout differs from the one the fast path was proven against: {', '.join(changed)}"
    return None


def perform_taken(job: Job) -> Any:
    """Job.perform without its PERSIST, which the fast path's TAKE did: the job is what rq.get_current_job() reads
    while its function runs, and its return value is kept where RQ's worker reads it."""
    rq.job._job_stack.push(job)
    try:
        job._result = job._execute()
    finally:
        rq.job._job_stack.pop()
    return job._result


def return_value(job: Job) -> Any:
    return job._result


def mark_busy(worker: BaseWorker) -> None:
    """The worker's own state, without RQ's round trip: the take wrote it to the worker's hash."""
    worker._state = WorkerStatus.BUSY


def stopped_job_id(worker: BaseWorker) -> str | None:
    """The job RQ's stop-job command named (rq.command.handle_stop_job_command sets it)."""
    return worker._stopped_job_id


def stop_on_begin(worker: BaseWorker, job_id: str) -> None:
    """Name the job RQ's stop-job command stops, before it runs (RQ's own handler names only the running job)."""
    worker._stopped_job_id = job_id


def stop_taking_jobs(worker: BaseWorker) -> None:
    """RQ's warm shutdown without a signal: the worker ends after the running job."""
    worker._stop_requested = True


def stop_requested(worker: BaseWorker) -> bool:
    return worker._stop_requested
