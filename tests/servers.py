"""Private Redis and Postgres servers for fault-injection tests: their own ports and data directories,
so tests can stop, kill and flush them without touching the machine's servers."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import free_port, wait_for

PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])


class PrivateRedis:
    """A redis-server on a port of its own that keeps nothing on disk, as Heroku's may lose its data."""

    def __init__(self, *options: str) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-"))
        self.options = options
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/1"

    def client(self) -> Redis:
        return Redis.from_url(self.url, socket_timeout=2)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        command += ["--save", "", "--appendonly", "no", *self.options]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                with self.client() as client:
                    return client.ping()
            except RedisError:
                return False

        wait_for(answers, 20, "the private redis-server")

    def kill(self) -> None:
        """Crash it (SIGKILL): with no persistence, it comes back empty."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """A Postgres cluster of its own (initdb + pg_ctl, run as the postgres user as they require)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(PG_BIN / "initdb", "-D", self.dir / "data", "--auth=trust", "-U", "postgres", "-E", "UTF8")
        self.start()
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE longjobs")
        conn.close()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/longjobs"

    def _as_postgres(self, *command: object) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, command)], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            PG_BIN / "pg_ctl", "-D", self.dir / "data", "-o", options, "-l", self.dir / "log", "-w", "start"
        )

    def stop(self) -> None:
        """Shut it down at once, cutting every connection (pg_ctl's fast mode)."""
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "stop")

    def close(self) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
             "immediate", "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(predicate, timeout: float) -> float:
    """Poll until predicate() is truthy; return the seconds it took (fails the test after `timeout`)."""
    started = time.monotonic()
    wait_for(predicate, timeout, getattr(predicate, "__name__", "a condition"))
    return time.monotonic() - started
