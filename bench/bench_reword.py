"""How often a small causal LM's rewording of the BANKING77 answer templates passes the assistant's check, and what
it costs per reply.

For each of the first ``--intents`` intents (alphabetical), the first test question of that intent is answered with
its filled template, which ``Rewriter`` then rewords; the result records whether the rewrite was used or why the
template was kept, and the wall time of the rewording.

    python bench/bench_reword.py --model smollm2 --intents 30
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "banking77" / "test.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2", help="a generation run directory or a causal LM name / folder")
    p.add_argument("--answers", default=str(ROOT / "data" / "apps" / "banking77_answers.yaml"))
    p.add_argument("--intents", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "reword.json"))
    args = p.parse_args()

    import torch

    from tuneforge.apps.assistant.answers import load_answers
    from tuneforge.apps.assistant.reword import Rewriter

    torch.set_num_threads(args.threads)
    answers = load_answers(args.answers)
    questions: dict[str, str] = {}
    with open(DATA, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            questions.setdefault(row["category"], row["text"])
    rewriter = Rewriter.load(args.model)
    rows = []
    for intent in sorted(answers.templates)[: args.intents]:
        question = questions.get(intent, intent.replace("_", " "))
        template = answers.render(intent)
        start = time.perf_counter()
        text, info = rewriter.reword(question, template, answers.slot_values(answers.templates[intent], None, intent))
        rows.append({"intent": intent, "question": question, "template": template, "rewrite_used": info["used"],
                     "answer": text, "kept_because": info.get("kept_because"),
                     "seconds": round(time.perf_counter() - start, 3)})
        print(json.dumps(rows[-1], ensure_ascii=False))
    used = sum(r["rewrite_used"] for r in rows)
    secs = [r["seconds"] for r in rows]
    out = {"what": "assistant rewording of BANKING77 templates, greedy; used = passed the fact check",
           "command": f"python bench/bench_reword.py --model {args.model} --intents {args.intents}",
           "host": f"{platform.processor() or platform.machine()}, {args.threads} threads",
           "intents": len(rows), "rewrites_used": used, "share_used": round(used / max(1, len(rows)), 3),
           "seconds_p50": statistics.median(secs), "seconds_max": max(secs), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"used {used}/{len(rows)}; p50 {out['seconds_p50']:.2f} s per rewording")


if __name__ == "__main__":
    main()
