"""The README's first command as a person at a terminal runs it, in this clone: `make run` on a terminal of its own,
wait for the URL its banner prints, one 202 -> 404 -> 200 cycle, then Ctrl-C; no process of the clone may remain 30 s
later. Then the same piped through tee (`make run 2>&1 | tee run.log`), with Ctrl-C while a task runs: the task
finishes within the worker's grace, and again nothing remains.

Python's standard library only: it runs before any virtual environment exists.
"""

import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CTRL_C = b"\x03"
STARTED_SECONDS = 600  # the first run installs the packages (and R, where missing)
GONE_SECONDS = 30


class Terminal:
    """A command on a pseudo-terminal of its own, as a person's shell runs it: its output read as it comes."""

    def __init__(self, command: str) -> None:
        self.output = b""
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(ROOT)
            os.execvp("bash", ["bash", "-c", command])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the terminal closed
                return
            if not chunk:
                return
            self.output += chunk

    def wait_for(self, pattern: str, seconds: float) -> re.Match:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.output.decode(errors="replace")):
                return match
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                fail(f"the command ended before {pattern!r} appeared")
            time.sleep(0.2)
        fail(f"no {pattern!r} within {seconds} s")

    def ctrl_c(self) -> None:
        os.write(self.fd, CTRL_C)  # the terminal sends SIGINT to its foreground process group


def fail(message: str) -> None:
    print(f"front door: FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def request(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as answer:
        return answer.code, json.load(answer)


def cycle(base: str, delay: float) -> str:
    """POST /multiply: 202, then 404 while it runs; returns its result URL."""
    status, body = request(f"{base}multiply", {"x": 6, "y": 7, "delay": delay})
    if status != 202:
        fail(f"POST /multiply answered {status} {body}")
    url = f"{base}multiply/{body['task_id']}"
    status, body = request(url)
    if status != 404 or body.get("status") not in ("queued", "started"):
        fail(f"the pending task answered {status} {body}")
    return url


def finished(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = request(url)
        if status == 200:
            if body.get("result") != 42.0:
                fail(f"the task finished as {body}")
            return
        time.sleep(0.2)
    fail(f"{url} did not answer 200 within {seconds} s")


def started(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while request(url)[1].get("status") != "started":
        if time.monotonic() > deadline:
            fail(f"{url} did not start within {seconds} s")
        time.sleep(0.2)


def psql(query: str) -> str:
    database = os.environ.get("DATABASE_URL", "postgresql://localhost/longjobs")
    return subprocess.run(["psql", database, "-tAc", query], capture_output=True, text=True, check=True).stdout.strip()


def ancestors() -> set[int]:
    """This process and those that started it (CI's own shell has its working directory in the clone too)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    return pids


def processes_of_the_clone() -> list[str]:
    """Every process but ours whose working directory is in the clone: make, web, worker, clock, R."""
    found, ours = [], ancestors()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in ours:
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if cwd == ROOT or ROOT in cwd.parents:
            found.append(f"{proc.name}: {command}")
    return found


def all_gone(terminal: Terminal, what: str) -> None:
    started = time.monotonic()
    while time.monotonic() - started < GONE_SECONDS:
        if not processes_of_the_clone():
            print(f"front door: {what}: every process ended {time.monotonic() - started:.1f} s after Ctrl-C")
            os.waitpid(terminal.pid, 0)
            return
        time.sleep(0.2)
    fail(f"{what}: still running {GONE_SECONDS} s after Ctrl-C:\n" + "\n".join(processes_of_the_clone()))


def main() -> None:
    if left := processes_of_the_clone():
        fail("processes of the clone run already:\n" + "\n".join(left))
    plain = Terminal("make run")
    base = plain.wait_for(r"The page: +(http://\S+/)", STARTED_SECONDS)[1]
    plain.wait_for(r"worker\.1 +\| .*Listening on", 60)
    finished(cycle(base, 1), 30)
    print(f"front door: make run: {base} served 202 -> 404 -> 200")
    plain.ctrl_c()
    all_gone(plain, "make run")

    piped = Terminal("make run 2>&1 | tee run.log")
    piped.wait_for(r"worker\.1 +\| .*Listening on", 120)
    url = cycle(base, 8)
    started(url, 30)
    piped.ctrl_c()  # tee ends at once; the worker finishes its task first
    all_gone(piped, "make run 2>&1 | tee run.log")
    row = psql(f"SELECT status, result FROM results WHERE task_id = '{url.rsplit('/', 1)[1]}'")
    if row != "finished|42.0":
        fail(f"the task running at Ctrl-C was not finished: its row reads {row!r}")
    print("front door: make run | tee: the task running at Ctrl-C finished before the worker stopped")
    (ROOT / "run.log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
