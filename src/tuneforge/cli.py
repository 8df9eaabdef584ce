"""The ``tuneforge`` command: a table of subcommands, each a thin wrapper over the Python API."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def register_command(name: str, help: str, setup: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[argparse.Namespace], int]) -> None:
    if name in COMMANDS:
        raise ValueError(f"command {name!r} is already registered")
    COMMANDS[name] = (help, setup, run)


# ---------------- train ----------------
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=3e-5 resume=true")


def _train(args: argparse.Namespace) -> int:
    from tuneforge.config import load_config
    from tuneforge.runner import train

    overrides = [("train.resume=" + o.split("=", 1)[1]) if o.startswith("resume=") else o for o in args.overrides]
    train(load_config(args.config, overrides))
    return 0


register_command("train", "fine-tune a model from a YAML config", _train_args, _train)


# ---------------- eval ----------------
def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `tuneforge train`")
    p.add_argument("--data", help="labelled file to score (default: the run's test split, from report.json)")
    p.add_argument("--format", default=None, help="data format of --data (default: the run config's)")


def _eval(args: argparse.Namespace) -> int:
    from tuneforge.data.readers import BadRows, ReadOptions, read_file
    from tuneforge.inference.predictor import Predictor

    if not args.data:  # the run's own splits were scored when it finished: read them, load no model
        report_path = Path(args.run_dir) / "report.json"
        if not report_path.is_file():
            raise FileNotFoundError(f"{report_path} does not exist: the run has not finished; give --data to score "
                                    f"its weights on a labelled file")
        report = json.loads(report_path.read_text())
        print(json.dumps({"metrics": report["metrics"], "baselines": report.get("baselines", {})}, indent=2,
                         ensure_ascii=False))
        return 0
    pred = Predictor.from_run_dir(args.run_dir)
    d = pred.cfg.data
    opts = ReadOptions.from_data(d, pred.task.name)
    bad = BadRows(skip=d.skip_bad_rows)
    examples = pred.task.parse(read_file(args.data, args.format or d.format, opts, bad, role="test"), bad)
    metrics = pred.evaluate(examples)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2))
    return 0


register_command("eval", "score a finished run on its test split or on another labelled file", _eval_args, _eval)


# ---------------- predict ----------------
def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", help="a finished run (or give --zero-shot CONFIG instead)")
    p.add_argument("--zero-shot", metavar="CONFIG", help="classify with no training: the config's untuned model "
                   "with its prompt (label descriptions for encoders, label words for decoders; fewshot.method icl "
                   "adds demonstrations from data.train)")
    p.add_argument("--input", required=True, help="a text file (one input per line), a JSONL file, or - for stdin")
    p.add_argument("--output", help="write JSONL here (default: stdout)")
    add_inference_args(p)


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision`` of ``predict`` and ``serve``."""
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="onnxruntime: sequence classification through a parity-checked ONNX export (the onnx extra)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                   help="auto: bf16 where this machine runs it measurably faster, else fp32; int8: sequence "
                        "classification on CPU with an int8 body, near ties redone in fp32 (same labels); on a CPU "
                        "whose int8 matmuls are slower than fp32 it warns and predicts in fp32")


BLANK = None  # the item _read_inputs puts where an input line is blank


def _input_text(source: str) -> str:
    """The input decoded as UTF-8; a bad byte names the file (or stdin) and its line."""
    from tuneforge.data.readers import DataError

    if source == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a text stream already (tests, embedding)
            return sys.stdin.read()
        data, name = buffer.read(), "<stdin>"
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(path, None, "input file not found")
        data, name = path.read_bytes(), source
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(name, line, f"cannot decode byte 0x{data[e.start]:02x} as UTF-8; convert the file to UTF-8 "
                                    "(e.g. iconv -f latin1 -t utf-8)") from None


def _read_inputs(source: str) -> list[Any]:
    """One item per input line: a string, a JSON object, or BLANK for a blank line (it keeps its row)."""
    from tuneforge.data.readers import DataError, json_error, load_json

    name = "<stdin>" if source == "-" else source
    items: list[Any] = []
    for i, line in enumerate(_input_text(source).splitlines(), start=1):
        if not line.strip():
            items.append(BLANK)
        elif line.lstrip().startswith("{"):
            try:
                items.append(load_json(line))
            except ValueError as e:
                raise json_error(Path(name), i, e) from None
            if not isinstance(items[-1], dict):
                raise DataError(name, i, "expected a JSON object")
        else:
            items.append(line.strip())
    return items


def _predict(args: argparse.Namespace) -> int:
    from tuneforge.inference.predictor import Predictor
    from tuneforge.io_utils import emit_jsonl

    if bool(args.run_dir) == bool(args.zero_shot):
        print("tuneforge predict: error: give a run directory, or --zero-shot CONFIG to predict without training "
              "(not both)", file=sys.stderr)
        return 2
    if args.zero_shot and (args.backend != "torch" or args.precision not in ("auto", "fp32")):
        print("tuneforge predict: error: --zero-shot predicts with the untuned torch model in fp32: drop "
              "--backend/--precision", file=sys.stderr)
        return 2
    items = _read_inputs(args.input)
    given = [item for item in items if item is not BLANK]
    if args.zero_shot:
        from tuneforge.config import load_config
        from tuneforge.prompting.runs import predict_untrained

        results = iter(predict_untrained(load_config(args.zero_shot), given) if given else [])
    else:
        results = iter(Predictor.from_run_dir(args.run_dir, precision=args.precision,
                                              backend=args.backend).predict(given) if given else [])
    blank = [i for i, item in enumerate(items, start=1) if item is BLANK]
    if blank:  # one output row per input line, so outputs stay aligned with inputs
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        print(f"tuneforge predict: {len(blank)} blank input line(s) ({shown}) kept as rows with "
              '"error": "empty input" and no prediction', file=sys.stderr)
    rows = [{"input": "", "error": "empty input", "line": i} if item is BLANK else {"input": item, **next(results)}
            for i, item in enumerate(items, start=1)]
    emit_jsonl(rows, args.output)
    return 0


register_command("predict", "predict with a finished run; writes JSONL", _predict_args, _predict)


# ---------------- data audit ----------------
def _data_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_cmd", required=True)
    a = sub.add_parser("audit", help="check split distributions, lengths, duplicates and leakage")
    a.add_argument("config")
    a.add_argument("overrides", nargs="*")
    a.add_argument("--json", help="also write the full audit report here")


def _data(args: argparse.Namespace) -> int:
    from tuneforge.config import load_config
    from tuneforge.data.audit import format_audit
    from tuneforge.io_utils import atomic_write_json
    from tuneforge.runner import audit

    report = audit(load_config(args.config, args.overrides))
    print(format_audit(report))
    if args.json:
        atomic_write_json(args.json, report)
    return 0


register_command("data", "data tools: `tuneforge data audit CONFIG`", _data_args, _data)


def _load_command_modules() -> None:
    """Commands that live in ``tuneforge/commands/*.py`` (serve, export, compare, chat, ...)."""
    import importlib
    import pkgutil

    import tuneforge.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"tuneforge.commands.{info.name}")
        if not getattr(module, "_registered", False):
            module.register(register_command)
            module._registered = True


def build_parser() -> argparse.ArgumentParser:
    _load_command_modules()
    from tuneforge import __version__

    parser = argparse.ArgumentParser(prog="tuneforge", description="Supervised fine-tuning: one config, one CLI.")
    parser.add_argument("--version", action="version", version=f"tuneforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, setup, _) in COMMANDS.items():
        setup(sub.add_parser(name, help=help_, description=help_))
    return parser


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe a problem with the input, the config, the run or the machine: the CLI prints them as one
    line. Anything else is a bug and keeps its traceback. Imported only when an error is being handled."""
    import importlib

    found: list[type[BaseException]] = [OSError]  # file not found, permission denied, disk full
    for module, name in EXPECTED_ERRORS:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:  # an optional extra that is not installed
            cls = None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


EXPECTED_ERRORS = (
    ("tuneforge.config", "ConfigError"),
    ("tuneforge.data.readers", "DataError"),
    ("tuneforge.extras", "MissingExtra"),
    ("tuneforge.models", "ModelNotFoundError"),
    ("tuneforge.registry", "UnknownNameError"),
    ("tuneforge.training.loop", "NonFiniteLossError"),
    ("tuneforge.training.checkpoint", "CheckpointError"),
    ("tuneforge.inference.onnx_backend", "OnnxBackendError"),
    ("tuneforge.inference.int8", "Int8Error"),
    ("tuneforge.inference.multi_adapter", "MultiAdapterError"),
    ("tuneforge.export", "ExportError"),
    ("tuneforge.tasks.generation.data", "TemplateError"),
)


def one_line(error: BaseException) -> str:
    return re.sub(r"\s*\n\s*", " ", str(error)).strip() or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand. Expected errors print ``tuneforge CMD: error: ...`` on one line and exit with 2
    (TUNEFORGE_TRACEBACK=1 shows the traceback instead); Ctrl-C exits with 130."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][2](args)
    except KeyboardInterrupt:
        print(f"tuneforge {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:  # an optional extra that is not installed: name it
        from tuneforge.extras import missing_message

        message = missing_message(e.name or "", f"tuneforge {args.command}")
        if message is None or os.environ.get("TUNEFORGE_TRACEBACK") == "1":
            raise
        print(f"tuneforge {args.command}: error: {message}", file=sys.stderr)
        return 2
    except expected_errors() as e:  # evaluated only when something was raised
        if os.environ.get("TUNEFORGE_TRACEBACK") == "1":
            raise
        print(f"tuneforge {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
