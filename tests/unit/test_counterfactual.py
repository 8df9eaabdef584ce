"""Counterfactual pairs: the shipped template sets load, and flips and shifts are counted per term pair."""

import numpy as np
import pytest

from tuneforge.data.readers import DataError
from tuneforge.evaluation import counterfactual as cf


def test_builtin_sets_load():
    assert cf.builtin_sets() == ["intents_en", "sentiment_en"]
    for name in cf.builtin_sets():
        cases = cf.load_cases(cf.resolve_template_file(name))
        assert {c.group for c in cases} == {"name", "gender", "nationality", "religion"}
        assert all(cf.SLOT not in t for c in cases for t in c.texts) and len(cases) > 100


def test_flip_counting_per_pair(tmp_path):
    path = tmp_path / "cf.yaml"
    path.write_text("pairs:\n  name: [[Greg, Jamal], [Anne, Mei]]\n"
                    "templates:\n  name: ['{term} liked it.', '{term} hated it.', 'Ask {term}.']\n")
    cases = cf.load_cases(path)
    assert len(cases) == 6 and cases[0].texts == ("Greg liked it.", "Jamal liked it.")

    def predict(texts):  # a biased stand-in: "Jamal" pushes towards label 1, and flips "Ask ..."
        out = []
        for t in texts:
            p1 = 0.9 if "hated" in t else 0.2
            p1 = min(1.0, p1 + (0.35 if "Jamal" in t else 0.0))
            out.append([1 - p1, p1])
        return out

    r = cf.run_counterfactuals(cases, predict, ["pos", "neg"])
    greg = next(p for p in r["pairs"] if p["term_b"] == "Jamal")
    mei = next(p for p in r["pairs"] if p["term_b"] == "Mei")
    assert (greg["n"], greg["flips"]) == (3, 2)  # "liked" 0.2 -> 0.55 and "Ask" flip; "hated" stays neg
    assert greg["flip_rate"] == pytest.approx(2 / 3)
    # shift of A's label probability: liked -0.35, hated +0.1 (0.9 -> 1.0), ask -0.35
    assert greg["mean_shift"] == pytest.approx((-0.35 + 0.1 - 0.35) / 3)
    assert greg["mean_abs_shift"] == pytest.approx(0.8 / 3)
    assert mei["flips"] == 0 and mei["mean_abs_shift"] == 0.0
    assert r["overall"]["flips"] == 2 and r["overall"]["n"] == 6
    assert r["pairs"][0] is greg and greg["examples"][0] == {"a": "Greg liked it.", "b": "Jamal liked it.",
                                                            "label_a": "pos", "label_b": "neg"}
    assert r["groups"]["name"]["flip_rate"] == pytest.approx(1 / 3)


def test_bad_template_file_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("pairs:\n  name: [[a, b]]\ntemplates:\n  name: ['no slot here']\n")
    with pytest.raises(DataError, match=r"bad.yaml.*templates.name\[0\] must contain \{term\}"):
        cf.load_cases(path)
    with pytest.raises(FileNotFoundError, match="built-in: intents_en, sentiment_en"):
        cf.resolve_template_file("nope.yaml")


def test_flip_stats_doc_example():
    r = cf.flip_stats(np.array([[0.9, 0.1]]), np.array([[0.1, 0.9]]))
    assert r["flips"] == 1 and r["mean_shift"] == pytest.approx(-0.8)
