"""The docs cannot rot: README commands parse and run (tiny settings here, the real model when slow), links and
anchors resolve, and every config file and config key the pages name exists."""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tuneforge.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
TICKED = re.compile(r"`([^`\n]+)`")
# settings that make any README run take seconds on a tiny random model (appended after the README's own)
TINY = ["train.max_steps=2", "data.limit=48", "data.validation_limit=16", "data.test_limit=16", "data.max_length=32",
        "train.progress=false", "train.precision=fp32", "train.batch_size=8", "eval.batch_size=16"]


# ---------------------------------------------------------------- reading the pages
def blocks(path: Path, lang: str) -> list[str]:
    return [body for tag, body in FENCE.findall(path.read_text(encoding="utf-8")) if tag == lang]


def commands(block: str) -> list[list[str]]:
    """Each shell line as words (comments dropped, ``\\`` continuations joined)."""
    return [words for line in block.replace("\\\n", " ").splitlines() if (words := shlex.split(line, comments=True))]


def tuneforge_argv(words: list[str]) -> list[str] | None:
    """The arguments after ``tuneforge`` (or ``-m tuneforge``) in one pipeline stage, else None."""
    stages: list[list[str]] = [[]]
    for word in words:
        if word == "|":
            stages.append([])
        else:
            stages[-1].append(word)
    for parts in stages:
        for i, word in enumerate(parts):
            if word == "tuneforge" and (i == 0 or parts[i - 1] == "-m"):
                return parts[i + 1:]
    return None


def prose(path: Path) -> str:
    """The page without its fenced code blocks: headings and links inside code do not count."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path).splitlines():
        if m := re.match(r"^#{1,6} (.+)$", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def config_keys() -> tuple[set[str], set[str]]:
    from tuneforge.config import describe_fields

    keys = {key for key, _, _ in describe_fields()}
    sections = {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}
    return keys, sections


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


# ---------------------------------------------------------------- every command parses
def check_command(words: list[str], where: str) -> None:
    argv = tuneforge_argv(words)
    if argv is not None:
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:
            pytest.fail(f"{where}: `{' '.join(words)}` does not parse (exit {e.code})")
        return
    head = words[0]
    if head == "make":
        assert set(words[1:]) <= make_targets(), f"{where}: unknown make target in `{' '.join(words)}`"
    elif head == "python" and words[1].endswith(".py"):
        assert (ROOT / words[1]).is_file(), f"{where}: {words[1]} does not exist"
    else:
        assert head in ("source", "curl", "tensorboard", "accelerate", "echo"), f"{where}: unchecked `{head}`"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_command_parses(page):
    for block in blocks(page, "bash"):
        for words in commands(block):
            check_command(words, page.name)


def test_readme_has_the_two_fresh_machine_commands():
    first = commands(blocks(README, "bash")[0])
    assert [w[:2] for w in first] == [["make", "demo"], ["make", "test"]]
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "Makefile has no demo recipe"
    config = re.search(r"tuneforge train (\S+)", recipe.group(1))
    assert config and (ROOT / config.group(1)).is_file()


# ---------------------------------------------------------------- links, config files, config keys
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(page):
    for target in LINK.findall(prose(page)):
        if re.match(r"^[a-z]+:", target):
            continue  # web links are not checked offline
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target} — {dest} does not exist"
        if anchor:
            assert dest.suffix == ".md" and anchor in anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_configs_and_config_keys_exist(page):
    text = page.read_text(encoding="utf-8")
    for path in re.findall(r"configs/[\w/.-]+\.yaml", text):
        assert (ROOT / path).is_file(), f"{page.name}: {path} does not exist"
    shipped = {p.name for p in (ROOT / "configs").rglob("*.yaml")}
    keys, sections = config_keys()
    for token in TICKED.findall(prose(page)):
        name = token.split()[0] if token.split() else ""
        if re.fullmatch(r"\w+\.yaml", name) and name != "config.yaml":
            assert name in shipped, f"{page.name}: no shipped config named {name}"
        key = re.split(r"[=:\s]", token, maxsplit=1)[0]
        if "." in key and key.split(".")[0] in sections and not re.search(r"\.(md|json|ya?ml|py|en|de)$", key):
            assert key in keys or key in sections, f"{page.name}: `{token}` names no config field"


# ---------------------------------------------------------------- the README tour runs (tiny model)
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """conftest's tiny BERT with 512 positions: the zero-shot baseline embeds test texts of up to 256 tokens."""
    import torch
    from transformers import BertConfig, BertModel

    from tests.conftest import build_word_tokenizer

    folder = tmp_path_factory.mktemp("tiny_bert_512")
    tok = build_word_tokenizer(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(folder)
    return folder


def run_cli(argv: list[str], stdin: str = "") -> None:
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        assert main(argv) == 0, argv
    finally:
        sys.stdin = old


def tiny(argv: list[str], model: Path) -> list[str]:
    """The README's command with the config made absolute and the tiny settings appended."""
    out = list(argv)
    for i, word in enumerate(out):
        if word.endswith(".yaml"):
            out[i] = str(ROOT / word)
    return out + [f"model={model}", *TINY] if argv[0] in ("train", "data") else out


def readme_tuneforge_commands() -> list[tuple[list[str], list[str]]]:
    """(shell words, tuneforge argv) of every README command, in page order."""
    found = []
    for block in blocks(README, "bash"):
        for words in commands(block):
            if (argv := tuneforge_argv(words)) is not None:
                found.append((words, argv))
    return found


def test_readme_tour_runs_on_a_tiny_model(tiny_model, tmp_path, monkeypatch, capsys):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tuneforge.inference.predictor import Predictor
    from tuneforge.inference.server import create_app

    monkeypatch.chdir(tmp_path)
    curl = [w for b in blocks(README, "bash") for w in commands(b) if w[0] == "curl"]
    ran = set()
    for words, argv in readme_tuneforge_commands():
        if argv[0] == "compare":
            continue  # one process per method: the slow test runs it
        if argv[0] == "serve":  # the app serve starts, asked with the README's curl body
            client = TestClient(create_app(Predictor.from_run_dir(argv[1])))
            body = json.loads(curl[0][curl[0].index("-d") + 1])
            got = client.post("/predict", json=body).json()["predictions"]
            assert len(got) == len(body["inputs"]) and "label" in got[0]
        else:
            stdin = " ".join(words[1:words.index("|")]) + "\n" if "|" in words else ""
            run_cli(tiny(argv, tiny_model), stdin)
        ran.add(argv[0])
    assert {"train", "data", "predict", "eval", "serve"} <= ran
    out = capsys.readouterr().out
    assert '"label"' in out and "JS-div" in out


def test_readme_python_block_runs_on_a_tiny_model(tiny_model, tmp_path, monkeypatch, capsys):
    import tuneforge.config

    real = tuneforge.config.load_config
    monkeypatch.setattr(tuneforge.config, "load_config", lambda path, overrides=None: real(
        ROOT / path, [*(overrides or []), f"model={tiny_model}", *TINY]))
    monkeypatch.chdir(tmp_path)
    (code,) = blocks(README, "python")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed[-2].split()) == 2 and printed[-1]  # the two accuracies, then a label


# ---------------------------------------------------------------- the same commands on the real model
@pytest.mark.slow
def test_readme_tour_runs_as_written(tmp_path):
    """Every README `tuneforge` command verbatim (packaged MiniLM), except serve, which would not return."""
    tool = Path(sys.executable).with_name("tuneforge")
    for words, argv in readme_tuneforge_commands():
        if argv[0] == "serve":
            continue
        argv = [str(ROOT / a) if a.endswith(".yaml") else a for a in argv]
        stdin = " ".join(words[1:words.index("|")]) + "\n" if "|" in words else None
        proc = subprocess.run([str(tool), *argv], cwd=tmp_path, input=stdin, capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, f"{' '.join(words)}\n{proc.stderr[-3000:]}"
