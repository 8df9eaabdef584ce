"""An installable library: dependency ranges (no exact pins), a constraints file with the tested pins that covers
every dependency, extras that exist, one-line errors naming the extra to install, ``tuneforge --version``."""

from __future__ import annotations

import re
import sys
import warnings

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib")
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXACT_ALLOWED = {"ruff"}  # the linter's rules change between minor versions: dev pins it so `make lint` is stable


def requirements() -> dict[str, list[Requirement]]:
    """``{"": core, "serve": [...], ...}``; the self-referencing ``all`` extra is left out."""
    groups = {"": [Requirement(r) for r in PYPROJECT["dependencies"]]}
    for extra, reqs in PYPROJECT["optional-dependencies"].items():
        groups[extra] = [Requirement(r) for r in reqs if not r.startswith("tuneforge[")]
    return groups


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_dependencies_are_ranges_not_pins():
    for extra, reqs in requirements().items():
        for req in reqs:
            ops = {s.operator for s in req.specifier}
            if req.name in EXACT_ALLOWED:
                continue
            assert "==" not in ops, f"{req} ({extra or 'core'}): a range, not an exact pin"
            assert ">=" in ops and "<" in ops, f"{req} ({extra or 'core'}): needs a tested minimum and an upper bound"
    torch = next(r for r in requirements()[""] if r.name == "torch")
    assert torch.specifier.contains("2.6.0") and torch.specifier.contains("2.13.0+cu128")  # bring your own build


def test_constraints_pin_every_dependency_inside_its_range():
    pins = constraints()
    assert pins["torch"] == "2.13.0"
    for extra, reqs in requirements().items():
        for req in reqs:
            name = canonicalize_name(req.name)
            assert name in pins, f"constraints.txt has no pin for {req.name} ({extra or 'core'})"
            assert req.specifier.contains(pins[name], prereleases=True), \
                f"constraints.txt pins {req.name}=={pins[name]} outside pyproject's {req.specifier}"


def test_the_all_extra_names_every_other_runtime_extra():
    all_extra = PYPROJECT["optional-dependencies"]["all"]
    named = set(re.search(r"\[(.*)\]", all_extra[0]).group(1).split(","))
    assert named == set(PYPROJECT["optional-dependencies"]) - {"all", "dev", "bench"}


def test_setup_and_ci_install_with_the_constraints():
    make = (ROOT / "Makefile").read_text()
    setup = make[make.index("$(STAMP):"):make.index("touch $(STAMP)")]
    installs = [ln for ln in setup.splitlines() if "pip install" in ln.replace("$(PIP)", "pip install")
                and "--upgrade pip" not in ln]
    assert installs and all("-c constraints.txt" in ln for ln in installs), installs
    assert "constraints.txt" in make.split("$(STAMP):")[1].splitlines()[0]  # a new pin reinstalls
    assert "make install-check" in (ROOT / ".ci" / "run").read_text()


def test_every_extra_named_in_messages_exists():
    from tuneforge.extras import EXTRA_OF

    assert set(EXTRA_OF.values()) <= set(PYPROJECT["optional-dependencies"])
    for module, extra in EXTRA_OF.items():  # each optional module comes with the extra its message names
        dists = {canonicalize_name(r.name) for r in requirements()[extra]}
        expected = {"sentence_transformers": "sentence-transformers", "prometheus_client": "prometheus-client",
                    "mlflow": "mlflow-skinny"}.get(module, module)
        assert canonicalize_name(expected) in dists, f"{module} is not in the {extra} extra"


def test_require_names_the_extra(monkeypatch):
    from tuneforge import extras

    monkeypatch.setitem(extras.EXTRA_OF, "tuneforge_no_such_module", "serve")
    with pytest.raises(extras.MissingExtra, match=r"^the server needs tuneforge_no_such_module, which is not "
                                                  r"installed: pip install 'tuneforge\[serve\]'$"):
        extras.require("tuneforge_no_such_module.sub", "the server")
    assert extras.require("json").dumps([]) == "[]"


def test_cli_prints_one_line_naming_the_extra(monkeypatch, capsys):
    from types import SimpleNamespace

    from tuneforge import cli

    def needs_optuna(_args):
        raise ModuleNotFoundError("No module named 'optuna'", name="optuna")

    def broken(_args):  # a module no extra provides stays a traceback: it is a bug, not a missing extra
        raise ModuleNotFoundError("No module named 'tuneforge.nothing'", name="tuneforge.nothing")

    monkeypatch.setattr(cli, "build_parser", lambda: SimpleNamespace(
        parse_args=lambda argv: SimpleNamespace(command=argv[0])))
    monkeypatch.setitem(cli.COMMANDS, "needs-optuna", ("", None, needs_optuna))
    monkeypatch.setitem(cli.COMMANDS, "broken", ("", None, broken))
    assert cli.main(["needs-optuna"]) == 2
    assert capsys.readouterr().err.strip() == ("tuneforge needs-optuna: error: tuneforge needs-optuna needs optuna, "
                                               "which is not installed: pip install 'tuneforge[search]'")
    with pytest.raises(ModuleNotFoundError):
        cli.main(["broken"])


def test_version_flag(capsys):
    from tuneforge import __version__, cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"tuneforge {__version__}"


def test_missing_tensorboard_warns_with_the_extra(monkeypatch, tmp_path):
    from tuneforge import tracking

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` of it raises ImportError
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tracking._tensorboard(tmp_path) is None
    assert any("pip install 'tuneforge[tracking]'" in str(w.message) for w in caught)
