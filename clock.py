"""The clock: `python clock.py` queues each schedule's runs as they come due (schedules.run_due_schedule) and sends
webhook deliveries as they come due (outbox.Dispatcher, in a thread of its own: a receiver that hangs delays no
schedule).

Imports app, sweeps and webhooks; nothing of ours imports this module. Two clocks at once are harmless (Heroku runs the
old and the new one side by side for a moment on a restart): each due run is queued by one of them, under its
schedule's row lock, and each delivery is claimed by one of them at a time.
"""

import logging
import signal
import threading

from sqlalchemy.exc import SQLAlchemyError

from app import create_app
from longjobs.push import outbox
from longjobs.workflows import schedules

log = logging.getLogger("clock")
TICK_SECONDS = 1.0  # how often the clock looks for due schedules


def main() -> int:
    """Tick until SIGTERM or Ctrl-C: queue every due run, then wait a tick; meanwhile, send webhooks. On a stop, the
    deliveries under way end (within 10 s) and are recorded."""
    app = create_app()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    dispatcher = threading.Thread(target=outbox.Dispatcher(app).run, args=[stop], name="webhooks")
    dispatcher.start()
    log.info("clock started: looking for due schedules every %g s, and sending webhooks", TICK_SECONDS)
    while not stop.is_set():
        try:
            with app.app_context():
                while not stop.is_set() and schedules.run_due_schedule() is not None:
                    pass
        except SQLAlchemyError as fault:  # the next tick tries again
            log.warning("clock tick skipped: the database is unreachable (%s)", fault)
        stop.wait(TICK_SECONDS)
    dispatcher.join()
    log.info("clock stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
