"""gunicorn settings for `web`, read by gunicorn from the working directory; each says why."""

import os

# Heroku tells the dyno which port to listen on; 5000 locally.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# One worker process per core is enough: requests only enqueue or read one row, never run jobs.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Each connection is a greenlet (gevent), not a process: a client that sends its body slowly, or never (nothing
# buffers requests in front of gunicorn, Heroku's router included), holds one greenlet, never the API. As fast as
# sync workers on the POST and poll benchmarks (docs/performance.md).
worker_class = "gevent"
worker_connections = 1000


def post_fork(server, worker):
    """psycopg2 waits for Postgres in C; psycogreen makes those waits yield to the other greenlets too."""
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


# Heroku's router gives up on a request after 30 s; kill a stuck worker before that.
timeout = 25
# Heroku sends SIGTERM and then SIGKILL 30 s later; let in-flight requests finish within that.
graceful_timeout = 25
# Access and error logs on stdout/stderr, where Heroku's log router collects them.
accesslog = "-"
errorlog = "-"
# Nothing here uses gunicornc, and every gunicorn on a machine would share the one default socket path
# (`make run` beside `make test`, say).
control_socket_disable = True
