"""``tuneforge recommend RUN_DIR --user ID`` (or ``--liked ID,ID``): top-K items of a recommendation run, with the
history items that most influenced each; ``--serve`` puts ``POST /v1/recommend`` on HTTP instead."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory of task recommendation")
    p.add_argument("--user", help="a user id of the run's interaction log (their whole history is used)")
    p.add_argument("--liked", help="comma-separated item ids a (new) user liked, oldest first; added to --user's")
    p.add_argument("-k", "--k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--json", action="store_true", help="print the JSON reply instead of a table")
    p.add_argument("--serve", action="store_true", help="serve POST /v1/recommend instead of answering once")
    p.add_argument("--hybrid", action="store_true",
                   help="fit the hybrid ranker (text score + popularity, recency, genre affinity) on the run's "
                        "validation users and compare it with the text model on the test users")
    p.add_argument("--fit-reranker", action="store_true",
                   help="fit the cross-encoder re-ranker (recommend.rerank_* settings) into RUN/recommend/"
                        "cross_encoder and compare the bi-encoder alone, + hybrid, + cross-encoder and the hybrid "
                        "over the cross-encoder's score on the test users (RUN/recommend/rerank.json)")
    rr = p.add_mutually_exclusive_group()
    rr.add_argument("--rerank", dest="rerank", action="store_true", default=None,
                    help="re-order the top recommend.rerank_k with the run's cross-encoder")
    rr.add_argument("--no-rerank", dest="rerank", action="store_false", help="the bi-encoder's order only")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)


def format_reply(reply: dict[str, Any]) -> str:
    """One line per item: rank, score, id and title, then what in the history pulled it up."""
    who = f"user {reply['user']}" if reply["user"] is not None else "these liked items"
    lines = [f"top {len(reply['items'])} for {who} ({reply['history_size']} history items, "
             f"{reply['latency_ms']:.1f} ms)"]
    for rank, item in enumerate(reply["items"], 1):
        because = "; ".join(f"{b['title']} ({b['similarity']:.2f})" for b in item["because"])
        lines.append(f"{rank:>3}. {item['score']:.3f}  [{item['item']}] {item['title']}\n        because: {because}")
    return "\n".join(lines) + "\n"


def _run(args: argparse.Namespace) -> int:
    from tuneforge.apps.recommend import Recommender

    liked = [i.strip() for i in (args.liked or "").split(",") if i.strip()]
    if args.hybrid:
        from tuneforge.apps.recommend.hybrid_eval import evaluate_hybrid

        out = evaluate_hybrid(args.run_dir)
        print(json.dumps(out, indent=2))
        return 0
    if args.fit_reranker:
        from tuneforge.apps.recommend.rerank_eval import evaluate_rerankers

        print(json.dumps(evaluate_rerankers(args.run_dir), indent=2))
        return 0
    if not args.serve and args.user is None and not liked:
        print("tuneforge recommend: error: give --user ID and/or --liked ID,ID", file=sys.stderr)
        return 2
    try:
        rec = Recommender.from_run_dir(args.run_dir)
        if args.serve:
            import uvicorn
            from fastapi import FastAPI

            from tuneforge.apps.recommend.routes import add_recommend_routes

            uvicorn.run(add_recommend_routes(FastAPI(title="TuneForge recommend"), rec), host=args.host,
                        port=args.port, log_level="info")
            return 0
        reply = rec.recommend(args.user, liked, args.k, rerank=args.rerank)
    except (KeyError, ValueError, FileNotFoundError) as e:
        print(f"tuneforge recommend: error: {str(e).strip(chr(39))}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(reply, ensure_ascii=False, indent=2) + "\n" if args.json else format_reply(reply))
    return 0


def register(register_command: Callable[..., None]) -> None:
    register_command("recommend", "top-K items for a user of a recommendation run (or --serve POST /v1/recommend)",
                     _args, _run)
