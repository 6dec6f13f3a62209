"""Running an R model: `Rscript --vanilla <file> <parameters.json>` from the project root, in a process group
of its own, with its standard output as the result (one JSON value) and its standard error as progress
(`PROGRESS <percent> <message>`) and log lines.

Whatever ends the run (its end, an error, a timeout or a stop raised in the calling thread), the whole
process group is killed before run() returns: no process the model started outlives its task. Should the
calling process die instead, the kernel kills Rscript (setpriv's parent-death signal), and whoever
outlives it kills the rest of the group by the id `on_start` was given.

A pure module: imports nothing of ours.
"""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
PROGRESS_LINE = re.compile(rb"PROGRESS\s+(\d+(?:\.\d+)?)(?:\s+(.*))?")
ERROR_TAIL_CHARS = 2000  # of standard error, in a failed task's error
LOGGED_LINES = 1000  # standard-error lines logged per task; the rest only count towards the tail
LINE_BYTES = 8192  # a longer line is taken in pieces
READER_JOIN_SECONDS = 5
MAX_OUTPUT_BYTES = 64 << 20  # a result larger than this is refused, rather than fill the worker's memory
INSTALL_HINT = "install R (Debian: r-base-core r-cran-jsonlite; on Heroku, an R buildpack before Python's)"

log = logging.getLogger(__name__)


class RScriptFailed(Exception):
    """The R process ended without a result; the message says how, with the end of its standard error."""


def _command(script: Path, params_file: str) -> list[str]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise RScriptFailed(f"Rscript is not installed on this worker (not found on PATH); {INSTALL_HINT}")
    command = [rscript, "--vanilla", str(script), params_file]
    setpriv = shutil.which("setpriv")  # util-linux, on every Debian and Heroku stack
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


def _read_output(stream: IO[bytes], into: bytearray) -> None:
    while chunk := stream.read(1 << 16):
        if len(into) <= MAX_OUTPUT_BYTES:
            into += chunk


def _read_errors(stream: IO[bytes], tail: deque[str], progress: Callable[..., None], task: str) -> None:
    logged = 0
    while line := stream.readline(LINE_BYTES):
        line = line.rstrip(b"\r\n")
        if match := PROGRESS_LINE.fullmatch(line):
            progress(float(match[1]), (match[2] or b"").decode(errors="replace").strip() or None)
            continue
        text = line.decode(errors="replace")
        tail.append(text)
        logged += 1
        if logged <= LOGGED_LINES:
            log.info("task %s: R: %s", task, text[:1000])
        elif logged == LOGGED_LINES + 1:
            log.info("task %s: R: (further standard-error lines are not logged)", task)


def _tail(lines: deque[str]) -> str:
    text = "\n".join(lines)
    return text[-ERROR_TAIL_CHARS:] if text else "(standard error was empty)"


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # nobody left in the group
        pass
    process.wait()


def run(
    script: Path,
    params: dict[str, Any],
    *,
    progress: Callable[..., None],
    task: str = "-",
    on_start: Callable[[int], None] = lambda group: None,
) -> Any:
    """Run an R model on its parameters and return its result; RScriptFailed says why it has none."""
    with tempfile.NamedTemporaryFile("w", prefix="params-", suffix=".json") as params_file:
        json.dump(params, params_file)
        params_file.flush()
        process = subprocess.Popen(
            _command(script, params_file.name),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, which the kill below takes whole
        )
        assert process.stdout is not None and process.stderr is not None  # both are PIPE
        tail: deque[str]
        output, tail = bytearray(), deque(maxlen=200)
        readers = [
            threading.Thread(target=_read_output, args=(process.stdout, output), daemon=True),
            threading.Thread(target=_read_errors, args=(process.stderr, tail, progress, task), daemon=True),
        ]
        try:
            on_start(process.pid)
            for reader in readers:
                reader.start()
            status = process.wait()  # a timeout or a stop raises here, in the thread that runs the job
        finally:
            _kill_group(process)  # what the model left running dies with it, and its pipes close
            for reader, stream in zip(readers, (process.stdout, process.stderr), strict=True):
                reader.join(timeout=READER_JOIN_SECONDS)  # a process that left the group may hold its pipe
                if not reader.is_alive():
                    stream.close()
            on_start(0)
    if status != 0:
        ended = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise RScriptFailed(f"Rscript {ended}; standard error ended with:\n{_tail(tail)}")
    if len(output) > MAX_OUTPUT_BYTES:
        raise RScriptFailed(f"the model printed more than {MAX_OUTPUT_BYTES >> 20} MB on standard output")
    try:
        return json.loads(output, parse_constant=_no_constant)
    except ValueError as exc:
        raise RScriptFailed(
            f"the model's standard output is not one JSON value ({exc}); standard error ended with:\n{_tail(tail)}"
        ) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")
