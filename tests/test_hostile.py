"""Hostile input: schemathesis against the API's own OpenAPI document (no worker runs, so nothing it
queues is executed), and hypothesis on the validators."""

import json
import math

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from longjobs import catalog
from longjobs.validation import InvalidRequest, parse_json
from tests.conftest import ROOT, app_fixture

pytestmark = pytest.mark.slow
MULTIPLY = catalog.load()["multiply"]


SCHEMATHESIS_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


shipped_app = app_fixture(MODELS_DIR=str(ROOT / "models"))  # the models the service ships, not the tests' own


def test_the_api_survives_what_its_own_schema_allows_and_more(shipped_app: Flask) -> None:
    # schemathesis's pytest plugin does not load under this pytest; its strategies are driven here instead.
    app = shipped_app
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 23 + 2 * len(app.extensions["models"])  # each model's two, and two older URLs
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy(generation_mode=mode))
            def survives(case) -> None:
                case.call_and_validate(checks=SCHEMATHESIS_CHECKS)

            try:
                survives()
            except Unsatisfiable:  # nothing in these operations can be made invalid (no parameters)
                assert mode is GenerationMode.NEGATIVE
                assert operation.path in ("/health", "/models", "/schedules", "/metrics", "/webhooks")


# Input generation competes with other tests for a shared 2-core machine: no deadlines.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(min_value=-1e150, max_value=1e150, allow_nan=False, allow_infinity=False)


@relaxed
@given(x=finite, y=finite, delay=st.floats(min_value=0, max_value=300))
def test_every_number_in_range_is_accepted(x: float, y: float, delay: float) -> None:
    body = parse_json(json.dumps({"x": x, "y": y, "delay": delay}).encode())
    params = MULTIPLY.validate(body)
    assert (params["x"], params["y"], params["delay"]) == (x, y, delay)
    assert math.isfinite(params["x"] * params["y"])


out_of_range = st.one_of(
    st.floats(min_value=1e150, exclude_min=True),
    st.floats(max_value=-1e150, exclude_max=True),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=10**150 + 1),
    st.integers(max_value=-(10**150) - 1),
)


@relaxed
@given(x=out_of_range)
def test_every_number_out_of_range_is_refused(x: float) -> None:
    body = json.dumps({"x": x, "y": 1}).encode()  # NaN and Infinity are written as JSON does not allow
    with pytest.raises(InvalidRequest):
        MULTIPLY.validate(parse_json(body))


@relaxed
@given(body=st.binary(max_size=200))
def test_any_bytes_either_parse_or_raise_invalid_request(body: bytes) -> None:
    try:
        parse_json(body)
    except InvalidRequest:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@relaxed
@given(body=st.dictionaries(st.sampled_from(["x", "y", "delay", "z", "<script>"]), json_values, max_size=4))
def test_any_json_object_is_a_request_or_a_named_refusal(body: dict) -> None:
    try:
        params = MULTIPLY.validate(parse_json(json.dumps(body).encode()))
    except InvalidRequest:  # anything else fails the test
        return
    assert set(body) <= {"x", "y", "delay"}
    assert all(isinstance(body[key], int | float) and not isinstance(body[key], bool) for key in body)
    assert math.isfinite(params["x"] * params["y"])
