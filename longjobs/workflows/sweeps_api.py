"""The sweeps area: POST /sweeps, GET /sweeps/<id> (as JSON or CSV), DELETE /sweeps/<id>.

Imports sweeps, the workflows' and the lifecycle's schemas, and http.
"""

from flask_openapi3 import Tag
from werkzeug.wrappers import Response

from longjobs.http import PENDING_HEADERS, SUBMIT_ERRORS, blueprint
from longjobs.lifecycle.schemas import SubmitHeaders, SubmitQuery
from longjobs.validation import ErrorBody
from longjobs.workflows import sweeps
from longjobs.workflows.schemas import (
    SweepAccepted,
    SweepCanceled,
    SweepPath,
    SweepPending,
    SweepPendingOrUnknown,
    SweepQuery,
    SweepRequest,
    SweepTable,
)

SWEEP_TAG = [Tag(name="sweeps", description="a model run over a grid of parameters, gathered into one table")]
sweeps_api = blueprint("sweeps")


@sweeps_api.post(
    "/sweeps",
    tags=SWEEP_TAG,
    summary="Run a model over a grid of parameters",
    responses={202: SweepAccepted, **SUBMIT_ERRORS},
)
def submit_sweep(query: SubmitQuery, header: SubmitHeaders, body: SweepRequest):
    """One run per combination of the grid's values, each an ordinary task; every run is validated first, and
    accepted (recorded and queued) with the others or not at all. 202 at once with the sweep's id."""
    sweep_id = sweeps.submit_sweep(body, query.priority, header.idempotency_key)
    return SweepAccepted(sweep_id=sweep_id).model_dump(mode="json"), 202, {"Location": f"/sweeps/{sweep_id}"}


@sweeps_api.get(
    "/sweeps/<uuid:sweep_id>",
    tags=SWEEP_TAG,
    summary="A sweep's table of results",
    responses={200: SweepTable, 404: SweepPendingOrUnknown, 400: ErrorBody},
)
def get_sweep(path: SweepPath, query: SweepQuery):
    """200 with every run's outcome in grid order once all have ended (`?format=csv`: as text/csv); 404 with its
    progress until then, or with an error for an unknown id."""
    found = sweeps.find_sweep(path.sweep_id)
    if isinstance(found, SweepPending):
        return found.model_dump(mode="json"), 404, PENDING_HEADERS
    if query.format == "csv":
        return Response(sweeps.sweep_csv(found), mimetype="text/csv")
    return found.model_dump(mode="json", exclude_unset=True)


@sweeps_api.delete(
    "/sweeps/<uuid:sweep_id>",
    tags=SWEEP_TAG,
    summary="Cancel or stop every run that has not ended",
    responses={202: SweepCanceled, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody},
)
def cancel_sweep(path: SweepPath):
    """202 with how many runs were canceled and how many are stopping; 409 once every run has ended."""
    return SweepCanceled.model_validate(sweeps.cancel_sweep(path.sweep_id)).model_dump(mode="json"), 202
