"""Keep `megabytes` of memory for good (tests), as a leaking job does, then multiply."""

from pydantic import BaseModel

_leaked: list[bytes] = []


class Params(BaseModel):
    x: float
    y: float
    megabytes: int


def run(params: Params, progress) -> float:
    _leaked.append(b"\x01" * (params.megabytes << 20))  # written, so resident
    return params.x * params.y
