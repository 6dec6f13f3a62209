"""The worker's machinery: its supervisor, recovery, the Lua scripts and the fence around RQ's internals."""
