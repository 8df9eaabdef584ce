"""docs/configuration.md is the generated reference of every config field, and the committed page is current."""

from __future__ import annotations

from pathlib import Path

from tuneforge.config import describe_fields
from tuneforge.config_docs import collect_sections, format_default, format_type, main, render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_committed_page_is_current():
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date with src/tuneforge/config_sections.py: run `make docs` "
        "(python -m tuneforge.config_docs --out docs/configuration.md) and commit the page")


def test_every_field_is_listed_with_its_help():
    rows = {key: (tp, default, help_text) for s in collect_sections() for key, tp, default, help_text in s.rows}
    fields = describe_fields()
    assert set(rows) == {key for key, _, _ in fields}
    for key, _, help_text in fields:
        assert rows[key][2] == help_text, key
    assert rows["train.lr"][:2] == ("float", "5e-05")
    assert rows["train.max_steps"][:2] == ("int | None", "null")
    assert rows["eval.baselines"][1] == "[majority, zero_shot]"
    page = render()
    assert "| `train.early_stopping.patience` |" in page and "## train.early_stopping" in page
    assert "source" not in {key for key, _, _ in fields}  # internal fields stay out


def test_formatting_helpers():
    assert format_type(int) == "int" and format_type(int | None) == "int | None"
    assert format_type(str | list[str] | None) == "str | list[str] | None"
    assert [format_default(v) for v in (None, True, "auto", "", 0.1, ["a", "b"])] == \
        ["null", "true", "auto", '""', "0.1", "[a, b]"]


def test_pipes_in_help_do_not_break_the_table():
    for line in render().splitlines():
        if line.startswith("| `"):
            assert line.replace("\\|", "").count("|") == 5, line


def test_cli_writes_the_page(tmp_path, capsys):
    out = tmp_path / "configuration.md"
    assert main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
    assert main([]) == 0
    assert capsys.readouterr().out == render()
