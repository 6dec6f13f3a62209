"""Fail on cue (tests): raise a fault on the first `failures` runs of a task, then multiply."""

from typing import Literal

from flask import current_app
from pydantic import BaseModel
from rq import get_current_job
from sqlalchemy.exc import OperationalError


class Params(BaseModel):
    x: float
    y: float
    failures: int
    fault: Literal["connection", "data"]


def run(params: Params, progress) -> float:
    runs = current_app.extensions["redis"].incr(f"test:runs:{get_current_job().id}")
    if runs <= params.failures:
        if params.fault == "connection":
            raise OperationalError("INSERT INTO results ...", {}, ConnectionError("server closed the connection"))
        raise ValueError(f"bad data on run {runs}")
    return params.x * params.y
