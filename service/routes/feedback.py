"""``POST /v1/feedback``: a grade for a served response, joined to its decision by response id."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from flowfront.grades import FeedbackIn
from flowfront.service.deps import Authorized, SharedDep
from flowfront.service.errors import UnknownResponse
from flowfront.service.routes import documented

api_routes = APIRouter(prefix="/v1", tags=["feedback"], dependencies=[Authorized])


@api_routes.post(
    "/feedback",
    responses=documented(401, said={404: "no served response with this id (or it was pruned)",
                                    422: "invalid field (named)"}),
)
async def feedback(body: FeedbackIn, shared: SharedDep) -> dict:
    """Record (or replace: one per response and name) a grade. Retraining reads ``correct``, then
    ``judge``; other names are kept and listed, never used for training."""
    row = body.row("api")
    unknown = await asyncio.to_thread(shared.served_store.put_feedback, [row])
    if unknown:
        raise UnknownResponse(
            f"no served response {body.id!r}: it was never answered here or has been pruned",
            hint="send the id of a response this service gave (run: trace_id, chat: id)",
        )
    return {"id": row.id, "name": row.name, "status": "recorded"}
