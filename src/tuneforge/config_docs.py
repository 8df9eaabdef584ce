"""The configuration reference page (docs/configuration.md), rendered from the typed config sections.

    python -m tuneforge.config_docs                              # print the page
    python -m tuneforge.config_docs --out docs/configuration.md  # write it (make docs)

The page is generated, never edited by hand: a test renders it afresh and compares it with the committed file.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any

from tuneforge.config import RunConfig
from tuneforge.config_typing import field_hints

HEADER = """# Configuration reference

<!-- Generated from src/tuneforge/config_sections.py by `make docs`; do not edit by hand. -->

A run is one YAML file whose top-level keys are the fields and sections below. Any field can also be set on the
command line as `section.field=value` after the config path (values are read as YAML scalars or lists):

```bash
tuneforge train configs/classification/banking77_demo.yaml train.lr=3e-5 data.limit=500 seed=7
```

Unknown keys and values of the wrong type stop the run with the field's name. The resolved config (every field,
defaults included) is saved as `config.yaml` in the run directory. See [getting started](getting-started.md) for a
first run and [data](data.md) for the file formats.
"""


@dataclasses.dataclass
class Section:
    """One table of the page: the fields of one dataclass, reached from the root through ``prefix``."""

    prefix: str  # "" for the top level, else "train." or "train.early_stopping."
    doc: str
    rows: list[tuple[str, str, str, str]]  # (key, type, default, help)


def format_type(tp: Any) -> str:
    """``int | None`` for a type hint, without ``typing.`` or ``<class ...>`` noise."""
    if tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def format_default(value: Any) -> str:
    """The default as it would be written in YAML: ``null``, ``true``, ``[a, b]``, plain strings unquoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    if isinstance(value, str):
        return '""' if value == "" else value
    return repr(value)


def _cell(text: str) -> str:
    # a literal | would end the table cell; a newline would end the row
    return " ".join(text.split()).replace("|", "\\|")


def _section_class(tp: Any) -> type | None:
    found = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
    return found[0] if found else None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def collect_sections(cls: type = RunConfig, prefix: str = "", doc: str = "") -> list[Section]:
    """Every section as a table, in declaration order: a section's own fields first, then its sub-sections."""
    section = Section(prefix, doc, [])
    nested: list[Section] = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        help_text = f.metadata.get("help", "")
        tp = field_hints(cls)[f.name]
        sub = _section_class(tp)
        if sub is not None:
            own = (sub.__doc__ or "").strip() if sub.__doc__ and not sub.__doc__.startswith(sub.__name__ + "(") else ""
            nested.extend(collect_sections(sub, f"{prefix}{f.name}.", " ".join(x for x in (help_text, own) if x)))
        else:
            section.rows.append((f"{prefix}{f.name}", format_type(tp), format_default(_default(f)), help_text))
    return [section, *nested]


def render() -> str:
    """The whole page as Markdown."""
    parts = [HEADER]
    for s in collect_sections():
        title = s.prefix.rstrip(".") or "Top level"
        parts.append(f"\n## {title}\n")
        if s.doc:
            parts.append(f"\n{' '.join(s.doc.split())}\n")
        parts.append("\n| key | type | default | description |\n| --- | --- | --- | --- |\n")
        for key, tp, default, help_text in s.rows:
            parts.append(f"| `{key}` | `{_cell(tp)}` | `{_cell(default)}` | {_cell(help_text)} |\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tuneforge.config_docs", description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the page here (atomically) instead of printing it")
    args = p.parse_args(argv)
    page = render()
    if args.out:
        from tuneforge.io_utils import atomic_write_text

        atomic_write_text(args.out, page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
