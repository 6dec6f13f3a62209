"""The service's parts, one sub-package per capability (docs/architecture.md draws them):

- catalog: the models users add (models/), loaded and checked at start-up, and the R runner;
- lifecycle: a task from its POST to its row, and the task and model routes;
- workflows: sweeps and schedules;
- push: webhooks (subscriptions, the address guard, the dispatcher), event streams and metrics;
- workers: the worker's machinery (supervisor, recovery, RQ's internals fenced, the Lua scripts);
- operations: the operator CLI, the dashboard, `make run`'s local runner, health.

The top-level modules are the entry points: core (settings, tables, Redis), tasks (the job functions RQ imports by
name), app (create_app), worker and clock. Imports run one way, from the entry points down
(tests/test_architecture.py).
"""
