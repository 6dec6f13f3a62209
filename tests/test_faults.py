"""Fault injection: the Procfile's processes on private Redis and Postgres servers that the tests kill,
flush, stop and restart. Each test checks that no accepted task is lost and that each ends with one row.

`make chaos` runs this module alone; `make test` runs it too. Measured recovery times are printed
(`pytest -s`) and quoted in docs/reliability.md.
"""

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pytest
import requests
from rq import Worker

from tests.conftest import DASHBOARD_PASSWORD, free_port, start_process, stop_process, wait_for, wait_for_web
from tests.servers import PrivatePostgres, PrivateRedis, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.close()


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.close()


class Service:
    """`release`, `web` and `worker` processes of the Procfile, on the private servers."""

    def __init__(self, tmp_path: Path, postgres: PrivatePostgres, redis: PrivateRedis, **env: str) -> None:
        self.tmp_path, self.postgres, self.redis = tmp_path, postgres, redis
        self.env = {
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url,
            "RQ_DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
            **env,
        }
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        release = self._start("release")
        assert release.wait(timeout=60) == 0, self.logs[-1].read_text()
        self.sql("TRUNCATE results, tasks, idempotency_keys")
        self.base = ""

    def _start(self, process: str) -> subprocess.Popen:
        log = self.tmp_path / f"{process}-{len(self.logs)}.log"
        started = start_process(process, log, **self.env)
        self.processes.append(started)
        self.logs.append(log)
        return started

    def sql(self, statement: str) -> list[tuple]:
        conn = psycopg2.connect(self.postgres.url)
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(statement)
                return cursor.fetchall() if cursor.description else []
        finally:
            conn.close()

    def start_web(self) -> str:
        port = free_port()
        self.env["PORT"] = str(port)
        web = self._start("web")
        self.base = f"http://127.0.0.1:{port}"

        wait_for_web(web, self.base, self.logs[-1])
        return self.base

    def start_worker(self) -> subprocess.Popen:
        """A worker process, returned once it waits for jobs."""
        before = self.idle_workers()
        worker = self._start("worker")
        wait_for(lambda: self.idle_workers() > before or worker.poll() is not None, 30, "the worker to wait for jobs")
        assert worker.poll() is None, self.logs[-1].read_text()
        return worker

    def idle_workers(self) -> int:
        with self.redis.client() as client:
            return sum(worker.get_state() == "idle" for worker in Worker.all(connection=client))

    def submit(self, **body: object) -> str:
        response = requests.post(f"{self.base}/multiply", json=body, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["task_id"]

    def status(self, task_id: str) -> str:
        return requests.get(f"{self.base}/tasks/{task_id}", timeout=10).json()["status"]

    def result(self, task_id: str) -> dict | None:
        response = requests.get(f"{self.base}/multiply/{task_id}", timeout=10)
        return response.json() if response.status_code == 200 else None

    def rows(self) -> int:
        return self.sql("SELECT count(*) FROM results")[0][0]

    def log_text(self) -> str:
        return "\n".join(log.read_text() for log in self.logs if log.exists())

    def close(self) -> None:
        for process in self.processes:
            stop_process(process)


@pytest.fixture
def service(tmp_path: Path, postgres: PrivatePostgres, redis_server: PrivateRedis, request) -> Iterator[Service]:
    env = getattr(request, "param", {})
    started = Service(tmp_path, postgres, redis_server, **env)
    yield started
    started.close()


def kill_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    os.killpg(process.pid, sig)


def test_a_job_whose_worker_is_killed_runs_again_and_completes_once(service: Service) -> None:
    service.start_web()
    doomed = service.start_worker()
    task_id = service.submit(x=6, y=7, delay=4)
    wait_for(lambda: service.status(task_id) == "started", 30, "the job to start")
    kill_group(doomed, signal.SIGKILL)  # as a host restart does: no warning, no cleanup
    doomed.wait(timeout=10)

    service.start_worker()  # with default settings: 20 s liveness
    recovery = wait_until(lambda: service.result(task_id), 90)
    print(f"\nSIGKILLed worker: its job completed {recovery:.1f} s after a new worker was waiting for jobs")
    assert recovery < 60
    assert service.result(task_id) | {"params": None} == {"task_id": task_id, "status": "finished", "params": None,
                                                          "result": 42.0}  # fmt: skip
    assert service.rows() == 1
    assert f"task {task_id}: its worker" in service.log_text()


@pytest.mark.parametrize("service", [{"WORKER_SHUTDOWN_GRACE": "2"}], indirect=True)
def test_sigterm_hands_a_long_job_back_to_the_queue(service: Service) -> None:
    service.start_web()
    leaving = service.start_worker()
    task_id = service.submit(x=2, y=3, delay=6)
    wait_for(lambda: service.status(task_id) == "started", 30, "the job to start")
    signalled = time.monotonic()
    kill_group(leaving, signal.SIGTERM)  # as Heroku does: every process of the dyno, work horse or not
    assert leaving.wait(timeout=20) == 0
    print(f"\nSIGTERM: the worker handed its job back and exited {time.monotonic() - signalled:.1f} s later")
    assert service.status(task_id) == "queued"
    assert service.rows() == 0

    service.start_worker()
    wait_until(lambda: service.result(task_id), 60)
    assert service.result(task_id)["result"] == 6.0
    assert service.rows() == 1
    assert "handed back to the front of its queue" in service.log_text()
    assert service.log_text().count("warm shut down requested") == 1  # signalled twice (group, supervisor): one stop


@pytest.mark.parametrize("service", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_accepted_tasks_complete_after_redis_loses_its_data(service: Service) -> None:
    service.start_web()
    service.start_worker()
    running = service.submit(x=1, y=2, delay=5)
    wait_for(lambda: service.status(running) == "started", 30, "the first job to start")
    waiting = [service.submit(x=3, y=n) for n in range(3)]
    with service.redis.client() as client:
        client.flushall()  # the queue, the jobs, the registries: all gone

    recovery = wait_until(lambda: all(service.result(task_id) for task_id in [running, *waiting]), 90)
    print(f"\nFLUSHALL: every accepted task completed within {recovery:.1f} s")
    assert service.result(running)["result"] == 2.0
    assert [service.result(task_id)["result"] for task_id in waiting] == [0.0, 3.0, 6.0]
    assert service.rows() == 4
    log = service.log_text()
    assert log.count(f"task {running} finished") == 1  # never queued again while its worker ran it
    assert all(f"task {task_id}: its job was lost from Redis; queued again" in log for task_id in waiting)
    with service.redis.client() as client:  # its progress did not bring back a hash of meta alone, which Job.fetch
        job = client.hgetall(f"rq:job:{running}")  # refuses and nothing ever expires
    assert not job or b"data" in job, job


@pytest.mark.parametrize("service", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_a_redis_crash_is_ridden_out_and_service_resumes_by_itself(service: Service) -> None:
    base = service.start_web()
    worker = service.start_worker()
    finished = service.submit(x=4, y=4)
    wait_until(lambda: service.result(finished), 30)
    accepted = service.submit(x=5, y=5, delay=1)

    service.redis.kill()
    started = time.monotonic()
    refused = requests.post(f"{base}/multiply", json={"x": 1, "y": 1}, timeout=10)
    assert time.monotonic() - started < 5
    assert (refused.status_code, "Retry-After" in refused.headers) == (503, True)
    assert service.result(finished)["result"] == 16.0  # Postgres still answers
    assert requests.get(f"{base}/health", timeout=10).status_code == 503
    time.sleep(3)
    assert worker.poll() is None  # it waits for Redis; it does not crash

    service.redis.start()  # empty: no persistence
    back = time.monotonic()
    wait_until(lambda: requests.get(f"{base}/health", timeout=10).status_code == 200, 60)
    recovery = wait_until(lambda: service.result(accepted), 120)
    print(f"\nRedis crash: the task accepted before it completed {time.monotonic() - back:.1f} s after Redis was back")
    assert service.result(accepted)["result"] == 25.0
    later = service.submit(x=7, y=7)
    wait_until(lambda: service.result(later), 60)
    assert worker.poll() is None
    assert service.rows() == 3
    assert recovery < 120


@pytest.mark.parametrize("service", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_a_job_that_ends_during_a_postgres_outage_keeps_its_result(service: Service) -> None:
    base = service.start_web()
    service.start_worker()
    task_id = service.submit(x=8, y=8, delay=3)
    wait_for(lambda: service.status(task_id) == "started", 30, "the job to start")
    service.postgres.stop()
    try:
        time.sleep(4)  # the job ends meanwhile
        assert requests.get(f"{base}/multiply/{task_id}", timeout=10).status_code == 503
        assert requests.post(f"{base}/multiply", json={"x": 1, "y": 1}, timeout=10).status_code == 503
        assert requests.get(f"{base}/health", timeout=10).json()["database"]["ok"] is False
        with service.redis.client() as client:
            assert client.hexists("longjobs:unwritten", task_id)
    finally:
        service.postgres.start()
    recovery = wait_until(lambda: service.result(task_id), 60)
    print(f"\nPostgres outage: the result kept in Redis was written {recovery:.1f} s after Postgres was back")
    assert service.result(task_id)["result"] == 64.0
    assert requests.get(f"{base}/health", timeout=10).status_code == 200
    assert service.rows() == 1


def test_a_thousand_posts_from_16_clients_with_2_workers(service: Service) -> None:
    base = service.start_web()
    service.start_worker()
    service.start_worker()
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))

    def post(n: int) -> tuple[int, str, float]:
        response = session.post(f"{base}/multiply", json={"x": n, "y": 3}, timeout=30)
        return response.status_code, response.json().get("task_id", ""), n * 3.0

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(1000)))
    accepted = time.monotonic() - started
    assert [status for status, _, _ in answers] == [202] * 1000

    drained = wait_until(lambda: service.rows() == 1000, 180)
    print(f"\n1000 POSTs from 16 clients: accepted in {accepted:.1f} s, all rows {drained:.1f} s later")
    results = dict(service.sql("SELECT task_id::text, (result #>> '{}')::float FROM results WHERE status = 'finished'"))
    assert {task_id: results[task_id] for _, task_id, _ in answers} == {task_id: want for _, task_id, want in answers}
    for _, task_id, want in answers[::50]:
        assert session.get(f"{base}/multiply/{task_id}", timeout=10).json()["result"] == want
    log = service.log_text()
    assert not re.search(r"\b(ERROR|CRITICAL|Traceback)\b", log)
    assert DASHBOARD_PASSWORD not in log
    assert '"x"' not in log and "'x'" not in log  # no payloads


def test_health_refuses_a_redis_that_evicts(tmp_path: Path, postgres: PrivatePostgres) -> None:
    evicting = PrivateRedis("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    service = Service(tmp_path, postgres, evicting)
    try:
        health = requests.get(f"{service.start_web()}/health", timeout=10)
        assert health.status_code == 503
        assert "noeviction" in health.json()["redis"]["error"]
    finally:
        service.close()
        evicting.close()


def test_a_redis_out_of_memory_is_a_503(tmp_path: Path, postgres: PrivatePostgres) -> None:
    tiny = PrivateRedis("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    service = Service(tmp_path, postgres, tiny)
    try:
        base = service.start_web()
        with tiny.client() as client:
            for n in range(10_000):
                try:
                    client.set(f"ballast:{n}", "x" * 10_000)
                except Exception:  # noqa: BLE001 - OOM once full, which is the point
                    break
        response = requests.post(f"{base}/multiply", json={"x": 1, "y": 2}, timeout=10)
        assert response.status_code == 503
        assert "out of memory" in response.json()["error"]
        assert int(response.headers["Retry-After"]) > 0
        assert service.sql("SELECT count(*) FROM tasks") == [(0,)]
    finally:
        service.close()
        tiny.close()


def test_requests_after_postgres_restarts_meet_no_dead_pooled_connection(service: Service) -> None:
    base = service.start_web()
    with ThreadPoolExecutor(8) as clients:  # several connections in each web process's pools
        warm = list(clients.map(lambda n: service.submit(x=n, y=1), range(32)))
    service.postgres.stop()
    service.postgres.start()
    with ThreadPoolExecutor(8) as clients:
        posts = list(
            clients.map(lambda n: requests.post(f"{base}/multiply", json={"x": n, "y": 1}, timeout=10), range(32))
        )
        polls = list(clients.map(lambda task_id: requests.get(f"{base}/multiply/{task_id}", timeout=10), warm))
    assert [response.status_code for response in posts] == [202] * 32
    assert [response.status_code for response in polls] == [404] * 32  # pending: no worker runs
