"""`make run` on this machine. `python -m longjobs.operations.local database` creates the database DATABASE_URL names
where it is missing; `python -m longjobs.operations.local start web worker=3 clock` runs those Procfile lines as Heroku
runs them, until Ctrl-C.

Imports core only (for the database's URL). Settings come from the environment, then from `.env` (python-dotenv, as
the flask CLI reads it), the environment winning.

honcho ran the processes before; it SIGKILLs what has not stopped 5 s after the first process stopped (a running
task's worker gets 25 s on Heroku), and it crashes, leaving every process running, once its output pipe is closed
(`make run | tee log`, then Ctrl-C, which ends tee first). Heroku's own rules, which this follows: each process in a
session of its own started as `bash -c "exec <line>"`; a stop is SIGTERM to each one's process group, then SIGKILL
to whatever is left 30 s later; when one process exits, the others are stopped.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO

from dotenv import load_dotenv
from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from core import load_settings

ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE_SECONDS = 30  # Heroku's, between SIGTERM and SIGKILL
POLL_SECONDS = 0.1
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill, a closed terminal


def create_database() -> int:
    """Create the database DATABASE_URL names (by default `longjobs`) if it is missing; one line if it cannot."""
    url = make_url(load_settings(os.environ)["SQLALCHEMY_DATABASE_URI"])
    shown = url.render_as_string(hide_password=True)
    try:
        check(url, "SELECT 1")
        return 0
    except OperationalError as fault:
        refusal = str(fault.orig).strip().splitlines()[0]
    try:  # the server's maintenance database tells a missing database from a server that cannot be reached
        exists = check(url.set(database="postgres"), "SELECT 1 FROM pg_database WHERE datname = :name", url.database)
    except OperationalError:
        print(f"make run: cannot connect to {shown}: {refusal}. Start Postgres, or set DATABASE_URL.", file=sys.stderr)
        return 1
    if not exists:
        try:
            check(url.set(database="postgres"), f"CREATE DATABASE {quoted(url)}")
        except DBAPIError as fault:
            print(f"make run: cannot create the database {shown}: {str(fault.orig).strip()}", file=sys.stderr)
            return 1
        print(f"make run: created the database {url.database!r}")
    return 0


def check(url: URL, statement: str, name: str | None = None) -> bool:
    """Run one statement in autocommit on the database `url` names; whether it returned a row."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            result = connection.execute(text(statement), {"name": name})
            return result.returns_rows and result.first() is not None
    finally:
        engine.dispose()


def quoted(url: URL) -> str:
    return postgresql.dialect().identifier_preparer.quote(url.database or "")


def procfile() -> dict[str, str]:
    lines = (line.partition(":") for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    return {name.strip(): command.strip() for name, _, command in lines}


def formation(arguments: list[str]) -> list[tuple[str, str]]:
    """`web worker=3 clock` as (name, command) pairs: web.1, worker.1, worker.2, worker.3, clock.1."""
    commands, processes = procfile(), []
    for argument in arguments:
        kind, _, count = argument.partition("=")
        if kind not in commands:
            raise SystemExit(f"make run: the Procfile has no {kind!r} process (it has {', '.join(commands)})")
        if count and not (count.isdigit() and int(count) >= 1):
            raise SystemExit(f"make run: {argument!r}: the count must be a whole number, at least 1")
        processes += [(f"{kind}.{n}", commands[kind]) for n in range(1, int(count or 1) + 1)]
    return processes


class Output:
    """Every process's lines on standard output, each behind its name; once nobody reads them (a closed pipe), the
    lines are dropped, but still read, so that no process blocks on a full pipe."""

    def __init__(self, width: int) -> None:
        self.width, self.lock, self.open = width, threading.Lock(), True

    def say(self, name: str, line: str) -> None:
        with self.lock:
            if self.open:
                try:
                    sys.stdout.write(f"{datetime.now():%H:%M:%S} {name:<{self.width}} | {line.rstrip()}\n")
                    sys.stdout.flush()
                except (BrokenPipeError, OSError):
                    self.open = False

    def relay(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self.say(name, line)


def start(arguments: list[str]) -> int:
    """Run the named processes until a signal, or until one of them exits; then stop them all. Exit 0 after a stop
    asked for, else the status of the process that exited first."""
    processes = formation(arguments)
    output = Output(max(len("system"), *(len(name) for name, _ in processes)))
    stops: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stops.append(signum)

    for signum in STOPS:
        signal.signal(signum, stop)
    running: dict[str, subprocess.Popen] = {}
    relays = []
    for name, command in processes:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace",
                                   start_new_session=True)  # fmt: skip
        running[name] = process
        relays.append(threading.Thread(target=output.relay, args=[name, process.stdout], daemon=True))
        relays[-1].start()
        output.say("system", f"{name} started (pid {process.pid}): {command}")
    while not stops and all(process.poll() is None for process in running.values()):
        time.sleep(POLL_SECONDS)
    first = next((name for name, process in running.items() if process.poll() is not None), None)
    code = 0 if first is None else running[first].returncode or 1
    output.say("system", f"{first} exited with status {running[first].returncode}" if first else "stopping")
    signal_all(running, signal.SIGTERM, output)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    asked = len(stops)
    while any(process.poll() is None for process in running.values()) and time.monotonic() < deadline:
        if len(stops) > asked:  # Ctrl-C again: at once
            break
        time.sleep(POLL_SECONDS)
    signal_all(running, signal.SIGKILL, output)  # whatever is left of each group, too
    for process in running.values():
        process.wait()
    for relay in relays:
        relay.join(timeout=1)
    return code


def signal_all(running: dict[str, subprocess.Popen], signum: signal.Signals, output: Output) -> None:
    for name, process in running.items():
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:  # it and everything it started have ended
            continue
        if signum == signal.SIGTERM or process.poll() is None:
            output.say("system", f"sent {signum.name} to {name}")


def main(arguments: list[str]) -> int:
    load_dotenv(ROOT / ".env", override=False)
    if arguments[:1] == ["database"]:
        try:
            return create_database()
        except ValueError as error:  # a bad setting: load_settings names it
            raise SystemExit(f"make run: {error}") from None
    if arguments[:1] == ["start"] and arguments[1:]:
        return start(arguments[1:])
    raise SystemExit("usage: python -m longjobs.operations.local database | start PROCESS[=COUNT] ...")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
