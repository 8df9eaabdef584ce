"""The application routes ``tuneforge serve`` adds for a run: the assistant (``POST /v1/assist``,
``/v1/feedback``) for a classification run whose config names an answers file, the OpenAI-compatible
``POST /v1/chat/completions`` for a generative run, and ``POST /v1/recommend`` for a recommendation run."""

from __future__ import annotations

from typing import Any


def add_run_routes(app: Any, predictor: Any) -> list[str]:
    """Add what fits ``predictor``'s run to ``app``; returns the added paths (none for other runs)."""
    name = getattr(predictor.task, "name", None)
    if name == "generation":
        from tuneforge.inference.openai_api import ChatGenerator, add_openai_routes

        add_openai_routes(app, ChatGenerator(predictor))
        return ["/v1/chat/completions", "/v1/models"]
    if name == "classification" and predictor.cfg.assistant.answers and predictor.run_dir is not None:
        from tuneforge.apps.assistant import Assistant
        from tuneforge.apps.assistant.routes import add_assistant_routes

        add_assistant_routes(app, Assistant.from_predictor(predictor))
        return ["/v1/assist", "/v1/feedback"]
    if name == "recommendation":
        from tuneforge.apps.recommend import Recommender
        from tuneforge.apps.recommend.routes import add_recommend_routes

        add_recommend_routes(app, Recommender.from_predictor(predictor))
        return ["/v1/recommend"]
    return []
