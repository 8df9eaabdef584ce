"""``tuneforge calibrate RUN_DIR``: fit (again) a classification run's temperature and abstention threshold."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a single-label classification run directory")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.evaluation.calibrate_run import recalibrate

    for split, m in recalibrate(args.run_dir).items():
        line = (f"{split}: ECE {m['ece_before_calibration']:.4f} -> {m['ece']:.4f} (T = {m['temperature']:.3f}); "
                f"threshold {m['threshold']:.4f} ({m['threshold_rule']}, score {m['oos_score']}): "
                f"in-scope coverage {m['in_scope_coverage']:.4f}, accuracy {m['in_scope_accuracy']:.4f}")
        if "oos_recall" in m:
            line += f", OOS recall {m['oos_recall']:.4f}"
        print(line)
    return 0


def register(register_command: Callable[..., None]) -> None:
    register_command("calibrate", "fit a classification run's temperature and abstention threshold on validation "
                                  "(calibration.json; report.json gains ECE and abstention figures)", _args, _run)
