"""The CLI: --help for each command, train → eval → predict → data audit, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.cli import COMMANDS, build_parser, main


def test_every_command_has_help(capsys):
    build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: tuneforge" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "tuneforge", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "train" in out.stdout


@pytest.fixture
def toy_run(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=100)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"),
        "data": {"train": "toy.csv", "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 6, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": ["majority"]},
    }))
    assert main(["train", str(cfg), "seed=3"]) == 0
    return tmp_path, cfg


def test_train_eval_predict_audit(toy_run, capsys):
    tmp_path, cfg = toy_run
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tmp_path / "toy.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.8
    (tmp_path / "in.txt").write_text("great love film\nterrible bad movie\n")
    assert main(["predict", str(run), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert set(rows[0]["scores"]) == {"positive", "negative"} and 0 <= rows[0]["score"] <= 1
    assert main(["data", "audit", str(cfg), "--json", str(tmp_path / "audit.json")]) == 0
    assert "JS-div" in capsys.readouterr().out
    assert json.loads((tmp_path / "audit.json").read_text())["splits"]["train"]["count"] == 60
    capsys.readouterr()
    (run / "best" / "model.safetensors").unlink()  # without --data nothing is loaded: the report's metrics, whole
    assert main(["eval", str(run)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["metrics"]["test"]["accuracy"] > 0.5 and "per_class" in json.dumps(scored)
    assert "majority" in scored["baselines"]


def test_predict_reads_stdin(toy_run, monkeypatch, capsys):
    import io

    tmp_path, _ = toy_run
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "great love film"}\n'))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), "--input", "-"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["label"] == "positive"


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("train:\n  lerning_rate: 1\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "train.lerning_rate: unknown field" in err and str(bad) in err
    cfg = tmp_path / "d.yaml"
    (tmp_path / "d.csv").write_text("text,label\nok,\n")
    cfg.write_text("model: minilm\ndata:\n  train: d.csv\n")
    assert main(["data", "audit", str(cfg)]) == 2
    assert "d.csv:2 [field 'label']: empty label" in capsys.readouterr().err


def test_predict_keeps_a_row_for_blank_lines_and_names_bad_bytes(toy_run, capsys):
    tmp_path, _ = toy_run
    run = tmp_path / "run"
    (tmp_path / "in.txt").write_text("great love film\n\n   \nterrible bad movie\n")
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(tmp_path / "in.txt")]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert len(rows) == 4  # one row per input line, so outputs line up with inputs
    assert rows[1] == {"input": "", "error": "empty input", "line": 2} and rows[2]["line"] == 3
    assert rows[0]["label"] == "positive" and rows[3]["label"] == "negative" and "error" not in rows[3]
    assert '2 blank input line(s) (2, 3) kept as rows with "error": "empty input"' in out.err
    (tmp_path / "bad.txt").write_bytes("fine film\ncaf\xe9 bad\n".encode("latin-1"))
    assert main(["predict", str(run), "--input", str(tmp_path / "bad.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.txt:2: cannot decode byte 0xe9 as UTF-8" in err
    (tmp_path / "j.txt").write_text('{"text": "good"}\n{"text": \n')
    assert main(["predict", str(run), "--input", str(tmp_path / "j.txt")]) == 2
    assert "j.txt:2: unparseable JSON" in capsys.readouterr().err


def test_invalid_utf8_on_stdin_is_named(monkeypatch, capsys):
    import io

    from tuneforge.cli import _read_inputs
    from tuneforge.data.readers import DataError

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe\n")))
    with pytest.raises(DataError, match=r"<stdin>:2: cannot decode byte 0xff"):
        _read_inputs("-")


def test_every_expected_error_is_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys):
    import tuneforge.runner
    import tuneforge.training.checkpoint as ckpt
    from tuneforge.training.loop import NonFiniteLossError

    if not hasattr(ckpt, "CheckpointError"):  # the checkpoint module's own error, when it has one
        monkeypatch.setattr(ckpt, "CheckpointError", type("CheckpointError", (RuntimeError,), {}), raising=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  train: x.csv\n")
    for error in (NonFiniteLossError("loss is nan at step 3 (epoch 0);\nlower train.lr"),
                  ckpt.CheckpointError("step-4: checksum mismatch in model.safetensors"),
                  PermissionError(13, "Permission denied", "runs/x")):
        def fail(_cfg, error=error):
            raise error
        monkeypatch.setattr(tuneforge.runner, "train", fail)
        assert main(["train", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("tuneforge train: error: ")
        assert str(error).split("\n")[0] in err
    monkeypatch.setattr(tuneforge.runner, "train", lambda _cfg: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # anything unexpected keeps its traceback
        main(["train", str(cfg)])
    monkeypatch.setenv("TUNEFORGE_TRACEBACK", "1")
    monkeypatch.setattr(tuneforge.runner, "train", lambda _cfg: (_ for _ in ()).throw(NonFiniteLossError("nan")))
    with pytest.raises(NonFiniteLossError):
        main(["train", str(cfg)])


def test_out_of_range_override_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  train: x.csv\n")
    assert main(["train", str(cfg), "train.lr=0"]) == 2
    assert capsys.readouterr().err == f"tuneforge train: error: {cfg}: train.lr: 0.0 must be > 0\n"


def test_data_audit_warns_about_unknown_tokens(tiny_bert_dir, tmp_path, capsys):
    rows = [f"{t},{y}" for t, y in [("这部电影很好看", "pos"), ("太糟糕了", "neg"), ("我很喜欢", "pos"),
                                       ("非常无聊", "neg")] * 5]
    (tmp_path / "zh.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": str(tiny_bert_dir), "data": {
        "train": "zh.csv", "split": {"validation": 0.2, "test": 0.2, "group_duplicates": False}}}))
    assert main(["data", "audit", str(cfg)]) == 0
    assert "of the tokens are the unknown token '[UNK]'" in capsys.readouterr().out
