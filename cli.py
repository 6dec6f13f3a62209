"""The operator CLI: `flask tasks ...`. Imports core, schemas and lifecycle."""

from flask.cli import AppGroup

tasks_group = AppGroup("tasks", help="Submit, watch, requeue and prune tasks.")
