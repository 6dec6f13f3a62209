"""Echo a text back, in its progress message and its result, or fail with it (tests: what the dashboard shows)."""

from pydantic import BaseModel


class Params(BaseModel):
    text: str
    fail: bool = False


def run(params: Params, progress) -> dict:
    progress(50, params.text)
    if params.fail:
        raise ValueError(params.text)
    return {"text": params.text}
