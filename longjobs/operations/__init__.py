"""Running the service: the operator CLI, the dashboard, and `make run`'s local runner."""
