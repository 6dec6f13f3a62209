"""FastWorker: AppWorker with RQ's per-job bookkeeping in Lua (scripts.py), in one round trip per job.

Imports the workers' appworker, rqinternals and scripts; worker.py builds it where rqinternals allows.
"""

import logging
import time
import uuid
from base64 import b64encode
from datetime import datetime
from typing import Any

from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue
from rq.command import parse_payload
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.suspension import is_suspended
from rq.utils import now, utcformat
from rq.worker import WorkerStatus

from longjobs.workers import rqinternals
from longjobs.workers.appworker import AppWorker, GatedJob
from longjobs.workers.scripts import Call, Scripts

log = logging.getLogger(__name__)
SUSPENSION_CHECK_SECONDS = 1.0  # how soon `rq suspend` takes effect
HEARTBEAT_SECONDS = 1.0  # RQ beats before and after every job; once a second is plenty
# How many ids a worker reads at the head of the first non-empty queue: it takes the first of them still at the head
# at its next round trip, so as many workers as this can drain one queue without looking again.
PEEK = 8


class TakenJob(GatedJob):
    """A job the fast path took: its key is already persistent, so performing it needs no round trip of its own."""

    def _perform(self) -> Any:
        return rqinternals.perform_taken(self)


Unrecorded = tuple[Job, Queue, list, list]  # a finished job, its queue, and FINISH's keys and arguments


class FastWorker(AppWorker):
    """AppWorker with RQ's per-job bookkeeping in Lua (scripts.py), in one round trip per job: a job's success is
    recorded, and the next job started, in the round trip that begins the next job, each as RQ's SimpleWorker
    records it. A job is marked started only as it begins, and recorded as it ends (the worker's loop in between).
    tests/test_equivalence.py holds it to the state RQ's own SimpleWorker leaves; rqinternals.fast_path_refusal says
    when it may run.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scripts = Scripts(self.connection)
        self.burst = False
        self._suspension_checked_at = float("-inf")
        self._unrecorded: list[Unrecorded] = []  # the last job's success; more after a round trip failed
        self._candidates: tuple[int, list[str]] | None = None  # the head of the first non-empty queue, last seen

    def work(self, *args, **kwargs) -> bool:
        self.burst = kwargs.get("burst", False)
        return super().work(*args, **kwargs)

    def teardown(self) -> None:
        """Record the last job's success before the worker's record goes (RQ's teardown)."""
        try:
            self._round_trip()
        except RedisError as fault:  # the watchmen write its RQ records from its row once this worker is gone
            log.warning("could not record the last job's success: %s", fault)
        super().teardown()

    def check_for_suspension(self, burst: bool) -> None:
        """As RQ does, at most once a second (TAKE itself starts nothing while workers are suspended)."""
        if time.monotonic() - self._suspension_checked_at < SUSPENSION_CHECK_SECONDS:
            return
        if is_suspended(self.connection, self):
            self._wait_while_suspended()
        self._suspension_checked_at = time.monotonic()

    def _wait_while_suspended(self) -> None:
        """Record the last job's success, rather than leave it reading started through the suspension, and wait as
        RQ's worker waits, idle (a burst worker stops)."""
        self._round_trip()
        if self.get_state() == WorkerStatus.BUSY:  # busy from its last job: RQ's worker is idle after each
            self.set_state(WorkerStatus.IDLE)
        super().check_for_suspension(self.burst)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """The job at the head of the queues, started in the round trip that records the last one's success; only when
        every queue is empty, block as RQ does."""
        while True:
            if (started := self._round_trip(take=True)) is not None:
                return started
            elif self._candidates is None:
                popped = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
                if popped is None:
                    return None
                job, queue = popped
                self._candidates = (self.queues.index(queue), [job.id])
                if (started := self._round_trip(take=True, given=True)) is not None:
                    return started

    def _round_trip(self, take: bool = False, given: bool = False) -> tuple[Job, Queue] | None:
        """Record the finished jobs and, with `take`, start the candidate at the head of the queues (or the one RQ's
        dequeue popped, `given`) and look at the queues' heads again. Returns the job started."""
        unrecorded, self._unrecorded = self._unrecorded, []
        if not (unrecorded or take):
            return None
        calls: dict[int, Call] = {}
        try:
            with self.connection.pipeline(transaction=False) as pipeline:
                finishes = [Scripts.call(pipeline, calls, self.scripts.finish, keys, args)
                            for _, _, keys, args in unrecorded]  # fmt: skip
                if take and self._candidates is not None:
                    keys, args, execution_id, took_at = self._take_arguments(given)
                    taking = Scripts.call(pipeline, calls, self.scripts.take, keys, args)
                if take:
                    for queue in self.queues:
                        pipeline.lrange(queue.key, 0, PEEK - 1)
                replies = Scripts.execute(pipeline, calls)
        except BaseException:
            self._unrecorded[:0] = unrecorded
            raise
        for (finished, queue, _, _), finish in zip(unrecorded, finishes, strict=True):
            if replies[finish]:  # RQ's own, as its worker does on a success
                queue.enqueue_dependents(finished)
                finished.cleanup(finished.get_result_ttl(self.default_result_ttl), remove_from_queue=False)
        if not take:
            return None
        candidates = self._candidates
        heads = replies[-len(self.queues) :]
        self._candidates = next(
            ((index, [id_.decode() for id_ in ids]) for index, ids in enumerate(heads) if ids), None
        )
        if candidates is None or replies[taking] == 0:
            return None
        if replies[taking] == -1:  # workers are suspended
            self._wait_while_suspended()
            return None
        return self._started(candidates, execution_id, took_at, *replies[taking])

    def _take_arguments(self, given: bool) -> tuple[list[str], list[Any], str, datetime]:
        """TAKE's keys and arguments for the candidates, the new execution's id, and the take's stamp."""
        assert self._candidates is not None
        index, ids = self._candidates
        took_at, execution_id = now(), uuid.uuid4().hex
        keys = [self.key, rqinternals.PROVEN_LAYOUT["suspended"], self.queues[index].started_job_registry.key]
        keys += [queue.key for queue in self.queues]
        for job_id in ids:
            names = {"job": job_id, "execution": execution_id}
            keys += [template.format(**names) for template in TAKE_KEYS]
        args = [self.name, utcformat(took_at), repr(took_at.timestamp()), index + 1, len(self.queues), int(given),
                execution_id, *ids]  # fmt: skip
        return keys, args, execution_id, took_at

    def _started(
        self, candidates: tuple[int, list[str]], execution_id: str, took_at: datetime, index: int, fields: list
    ) -> tuple[Job, Queue]:
        """The job TAKE started, read from the hash it returned, with its execution."""
        queue, job_id = self.queues[candidates[0]], candidates[1][index]
        job = TakenJob(job_id, connection=self.connection, serializer=self.serializer)
        hash_ = dict(zip(fields[::2], fields[1::2], strict=True))
        del hash_[b"started_at"], hash_[b"last_heartbeat"]  # the take's own stamp: no need to parse it back
        job.restore(hash_)
        job.started_at = job.last_heartbeat = took_at
        self.execution = Execution(execution_id, job.id, self.connection, self.name)
        self.execution.created_at = self.execution.last_heartbeat = took_at
        rqinternals.mark_busy(self)
        return job, queue

    def handle_payload(self, message: dict) -> None:
        """RQ's; and a stop for a job this worker has marked started (TAKE) but not begun yet ends it as it begins:
        RQ's own handler ignores a stop for any job but the running one, and RQ's worker marks a job started only
        once it runs it."""
        payload = parse_payload(message)
        job_id = payload.get("job_id")
        if payload.get("command") == "stop-job" and job_id and job_id != self.get_current_job_id():
            status, worker = self.connection.hmget(Job.key_for(job_id), "status", "worker_name")
            if (status, worker) == (JobStatus.STARTED.value.encode(), self.name.encode()):
                rqinternals.stop_on_begin(self, job_id)
        super().handle_payload(message)

    def _execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job. The worker stays busy, locally too, until its next dequeue finds every queue empty:
        a SIGTERM between jobs is then RQ's warm shutdown, never an exception amid a round trip."""
        self.perform_job(job, queue)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """TAKE did RQ's preparation; a stop asked for before the job began ends it here."""
        self._stop_if_asked(job)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        job.ended_at = now()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """Keep the job's bookkeeping (FINISH) for the round trip that starts the next job (or that the worker makes
        before it waits, stops or is suspended). A job that repeats or belongs to a group is recorded by RQ's own
        code, at once."""
        if job.repeats_left is not None or job.group_id is not None:
            return super().handle_job_success(job, queue, started_job_registry)
        # Set when the job was taken (_started) and when it ended (handle_execution_ended).
        assert self.execution is not None and job.started_at is not None and job.ended_at is not None
        # Result.serialize's fields, made here: a Result object costs a serializer check per job.
        result = {"type": Result.Type.SUCCESSFUL.value, "worker_name": self.name, "execution_id": self.execution.id,
                  "execution_started_at": self.execution.created_at.timestamp(),
                  "execution_ended_at": job.ended_at.timestamp()}  # fmt: skip
        if (value := rqinternals.return_value(job)) is not None:
            result["return_value"] = b64encode(self.serializer.dumps(value)).decode()
        took = (job.ended_at - job.started_at).total_seconds()
        names = {"job": job.id, "queue": job.origin, "execution": self.execution.id}
        keys = [self.key, *(template.format(**names) for template in FINISH_KEYS)]
        args = [job.id, self.execution.id, job.get_result_ttl(self.default_result_ttl), utcformat(job.ended_at), took,
                repr(job.ended_at.timestamp())]  # fmt: skip
        args += [part for field in result.items() for part in field]
        self.execution = None
        self._unrecorded.append((job, queue, keys, args))

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        recent = self.last_heartbeat and (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_SECONDS
        if pipeline is None and timeout is None and recent:
            return
        super().heartbeat(timeout, pipeline)


# The keys TAKE takes per candidate and FINISH per job (scripts.py), in their order.
TAKE_KEYS = [rqinternals.PROVEN_LAYOUT[kind] for kind in ("job", "execution", "executions")]
FINISH_KEYS = [
    rqinternals.PROVEN_LAYOUT[kind]
    for kind in ("job", "results", "finished", "execution", "started", "executions", "dependents", "dependencies")
]
