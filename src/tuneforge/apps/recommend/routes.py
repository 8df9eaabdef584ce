"""HTTP route of the recommender: ``POST /v1/recommend`` on any FastAPI app."""

# no `from __future__ import annotations`: FastAPI must see the request model class itself

from typing import Any

MAX_LIKED = 500


def add_recommend_routes(app: Any, recommender: Any) -> Any:
    """Add ``POST /v1/recommend`` to ``app`` and return it.

    ``{"user": str?, "liked": [item id]?, "k": int = 10, "rerank": bool?}`` → ``{"user", "history_size", "items":
    [{"item", "title", "score", "rerank_score"?, "because": [{"item", "title", "similarity"}]}], "reranked",
    "latency_ms"}``. An unknown user is a 404; an unknown item id, an empty request or ``rerank`` on a run without
    a re-ranker a 422.
    """
    from fastapi import HTTPException
    from pydantic import BaseModel, Field

    class RecommendRequest(BaseModel):
        user: str | None = Field(default=None, min_length=1, max_length=200)
        liked: list[str] | None = Field(default=None, max_length=MAX_LIKED)
        k: int = Field(default=10, ge=1, le=100)
        rerank: bool | None = None  # null: the run's recommend.rerank

    @app.post("/v1/recommend")
    def recommend(req: RecommendRequest) -> dict[str, Any]:
        try:
            return recommender.recommend(req.user, [str(i) for i in req.liked or []], req.k, rerank=req.rerank)
        except KeyError as e:
            raise HTTPException(status_code=404, detail=str(e).strip("'\"")) from None
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None

    return app
