"""HTTP routes of the assistant: ``POST /v1/assist`` and ``POST /v1/feedback`` on any FastAPI app."""

# no `from __future__ import annotations`: FastAPI must see the request model classes themselves

from typing import Any

MAX_TEXT = 2000  # characters: the classifier reads at most data.max_length tokens anyway


def add_assistant_routes(app: Any, assistant: Any) -> Any:
    """Add the assistant's routes to ``app`` (a FastAPI app) and return it.

    ``POST /v1/assist`` ``{"text": str, "slots": {name: value}?}`` → the reply (id, path, intent, confidence,
    answer, candidates). ``POST /v1/feedback`` ``{"id": str, "correct": bool, "intent": str?, "comment": str?,
    "text": str?}`` → the stored record, on disk when the response is sent.
    """
    from fastapi import HTTPException
    from pydantic import BaseModel, Field

    class AssistRequest(BaseModel):
        text: str = Field(min_length=1, max_length=MAX_TEXT)
        slots: dict[str, str] | None = None

    class FeedbackRequest(BaseModel):
        id: str = Field(min_length=1, max_length=128)
        correct: bool
        intent: str | None = None
        comment: str | None = Field(default=None, max_length=MAX_TEXT)
        text: str | None = Field(default=None, max_length=MAX_TEXT)

    @app.post("/v1/assist")
    def assist(req: AssistRequest) -> dict[str, Any]:
        try:
            return assistant.reply(req.text, req.slots)
        except (ValueError, KeyError) as e:
            raise HTTPException(status_code=422, detail=str(e).strip("'\"")) from None

    @app.post("/v1/feedback")
    def feedback(req: FeedbackRequest) -> dict[str, Any]:
        try:
            return {"stored": True, "record": assistant.feedback(req.id, req.correct, req.intent, req.comment,
                                                                 req.text)}
        except KeyError as e:
            raise HTTPException(status_code=404, detail=str(e).strip("'\"")) from None
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None

    return app
