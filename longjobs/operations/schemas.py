"""The schema of GET /health.

A pure module: imports nothing of ours.
"""

from pydantic import BaseModel


class Check(BaseModel):
    ok: bool
    error: str | None = None


class Health(BaseModel):
    redis: Check
    database: Check
    workers: int
    queues: dict[str, int]
    failed: int
