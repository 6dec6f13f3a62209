"""The supervisor of the worker process: `python worker.py` runs the worker under supervise(), which forks it
once the modules are imported and starts a fresh one when a job kills it or it retires; what a dead worker
process leaves running ends with it, and its record in Redis goes at once (RQ's worker removes its own as it stops).

Imports core and catalog (the settings and the models are checked before forking); worker.py imports this.
"""

import ctypes
import logging
import mmap
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from redis.exceptions import RedisError
from rq import Worker
from rq.serializers import JSONSerializer

from core import connect_redis, load_settings
from longjobs import catalog

log = logging.getLogger(__name__)
MAX_RESTART_BACKOFF_SECONDS = 30
PR_SET_CHILD_SUBREAPER = 36  # prctl(2), Linux
RETIRED = 3  # the exit status of a worker process that stopped to be replaced (over WORKER_MAX_MEMORY_MB)
JOB_ID_BYTES = 48
GROUP = struct.Struct("q")
WORKER_NAME_BYTES = 64


class RunningJob:
    """The id of the job a worker process runs now, the process group of the R process it runs (if any), and the
    worker's name, in memory shared with supervise(), which outlives it: a job still named there when the process
    died is the one that killed it, and what it left running is killed then. Job ids are 36 characters here."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, JOB_ID_BYTES + GROUP.size + WORKER_NAME_BYTES)
        self._name_at = JOB_ID_BYTES + GROUP.size

    def get(self) -> str:
        return self._memory[:JOB_ID_BYTES].rstrip(b"\0").decode()

    def set(self, job_id: str) -> None:
        self._memory[:JOB_ID_BYTES] = job_id.encode().ljust(JOB_ID_BYTES, b"\0")

    def set_group(self, group: int) -> None:
        """rscript.run names the process group it starts (0 once it is gone)."""
        GROUP.pack_into(self._memory, JOB_ID_BYTES, group)

    def get_worker(self) -> str:
        return self._memory[self._name_at :].rstrip(b"\0").decode()

    def set_worker(self, name: str) -> None:
        """The worker process names its RQ worker (RQ's names are 32 characters)."""
        self._memory[self._name_at :] = name.encode().ljust(WORKER_NAME_BYTES, b"\0")

    def kill_group(self) -> None:
        """Kill what the job of a dead worker process left running."""
        if group := GROUP.unpack_from(self._memory, JOB_ID_BYTES)[0]:
            try:
                os.killpg(group, signal.SIGKILL)
                log.warning("killed the processes (group %d) its job had started", group)
            except ProcessLookupError:
                pass
            self.set_group(0)


def wait_for_child(child: int) -> int:
    """Wait until the worker process ends and return its exit code, reaping the orphans that end meanwhile."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def kill_orphans() -> None:
    """Kill what a dead worker process left running: with no worker process, every child of this one is one."""
    me = os.getpid()
    for pid in map(int, Path(f"/proc/{me}/task/{me}/children").read_text().split()):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        log.warning("killed process %d, left running by the worker process that ended", pid)


def forget_worker(name: str) -> None:
    """Take a dead worker process's RQ worker out of Redis as RQ's worker does as it stops (register_death), so that
    /health, /metrics and the dashboard stop counting it; its job is recovered as before (recovery.py)."""
    try:
        with connect_redis(load_settings(os.environ)["REDIS_URL"]) as redis:
            key = f"{Worker.redis_worker_namespace_prefix}{name}"
            if (worker := Worker.find_by_key(key, connection=redis, serializer=JSONSerializer)) is not None:
                worker.register_death()
                log.info("worker %s: its record is gone with its process", name)
    except RedisError as fault:  # it stops being counted once its heartbeat is a minute old (core.live_workers)
        log.warning("worker %s: could not remove its record: %s", name, fault)


def supervise(serve: Callable[[RunningJob], int]) -> None:
    """Run `serve` (the worker) in a child process, and start a fresh one when it retires or dies.

    The child is forked once the modules are imported, and before the app or any connection exists, so
    nothing but code crosses the fork. SIGTERM or SIGINT here goes on to the child as SIGTERM (which it
    takes once, however often it comes: Heroku and `make run` signal both processes); this
    process then waits for it and exits 0.
    """
    # A bad setting or a broken model file stops this process at once, rather than every child in a loop.
    catalog.load(load_settings(os.environ)["MODELS_DIR"])
    running = RunningJob()
    stop = threading.Event()
    child = 0
    # What a dead worker process leaves running (RQ's scheduler process, what an R model started) is handed to
    # this process, which outlives it, rather than to init: kill_orphans() ends it.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if child:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    backoff = 1
    while not stop.is_set():
        started = time.monotonic()
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.exit(serve(running))
        if stop.is_set():  # a signal that came while forking found no child to pass it on to
            os.kill(child, signal.SIGTERM)
        code = wait_for_child(child)
        pid, child = child, 0
        running.kill_group()
        kill_orphans()
        if code not in (0, RETIRED) and (name := running.get_worker()):
            forget_worker(name)
        running.set_worker("")
        if stop.is_set() or code == 0:
            return
        if code == RETIRED:
            log.info("worker process %d retired; a fresh one takes over", pid)
            continue
        ended = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        if task_id := running.get():
            ended += f" running task {task_id}"
        backoff = 1 if time.monotonic() - started > 60 else backoff  # back off only while it keeps dying
        log.error("worker process %d %s; starting another in %d s", pid, ended, backoff)
        stop.wait(backoff)
        backoff = min(backoff * 2, MAX_RESTART_BACKOFF_SECONDS)
