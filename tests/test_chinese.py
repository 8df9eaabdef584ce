"""Chinese end to end: metrics that score characters, CMRC answer repairs, a Chinese-vocabulary model through
``model: <path>``, and streamed text that never ends inside a character."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.evaluation.language import CharTokenizer, char_units, detect_language, resolve_language
from tuneforge.tasks.generation.metrics import generation_metrics, normalise_chinese
from tuneforge.tasks.qa.metrics import (
    cmrc_exact_match,
    cmrc_f1,
    longest_common_substring,
    mixed_segmentation,
    qa_metrics,
)

# ----- language -----


def test_detect_language_by_share_of_chinese_characters():
    assert detect_language(["这家酒店很干净", "服务不错"]) == "zh"
    assert detect_language(["the room was clean"]) == "en"
    assert detect_language(["iPhone 15 很好用"]) == "zh"  # 3 of 12 non-space characters
    assert resolve_language("en", ["这家酒店"]) == "en"
    with pytest.raises(ValueError, match="unknown language 'fr'; known: auto, en, zh"):
        resolve_language("fr", [])


def test_char_units_keep_words_of_other_scripts_whole():
    assert char_units("我爱Python 3!") == ["我", "爱", "python", "3", "!"]
    assert CharTokenizer().tokenize("你好，world。") == ["你", "好", "world"]


# ----- QA: the CMRC 2018 rules, computed by hand -----


def test_mixed_segmentation_drops_only_the_listed_punctuation():
    assert mixed_segmentation("  《三国演义》  ", rm_punc=True) == ["三", "国", "演", "义"]
    assert mixed_segmentation("《三国》") == ["《", "三", "国", "》"]
    # English punctuation outside the list stays a segment, as nltk's tokenizer leaves it in the official script
    assert mixed_segmentation("公元1644年, Ming", rm_punc=True) == ["公", "元", "1644", "年", ",", "ming"]


def test_cmrc_f1_is_over_the_longest_common_substring_not_a_bag_of_characters():
    # gold 北京大学 (4), prediction 大学北京 (4): a bag-of-characters F1 would be 1.0; the longest common
    # substring is 北京 or 大学 (2) → P = R = 0.5 → F1 0.5
    assert cmrc_f1("大学北京", "北京大学") == pytest.approx(0.5)
    # gold 中国科学院 (5), prediction 科学院 (3): LCS 3 → P 1, R 0.6 → F1 0.75
    assert cmrc_f1("科学院", "中国科学院") == pytest.approx(0.75)
    assert cmrc_f1("", "北京") == 0.0
    assert longest_common_substring(list("abcxde"), list("zbcxq")) == 3


def test_cmrc_exact_match_ignores_listed_punctuation_and_case():
    assert cmrc_exact_match("《红楼梦》", "红楼梦") == 1.0
    assert cmrc_exact_match("Beijing大学", "beijing大学") == 1.0
    assert cmrc_exact_match("红楼", "红楼梦") == 0.0


def test_qa_metrics_pick_chinese_rules_from_the_answers():
    preds = ["科学院", "北京大学。", "上海"]
    golds = [["中国科学院"], ["北京大学", "北大"], ["南京", "江苏南京"]]
    zh = qa_metrics(preds, golds)
    assert zh["exact_match"] == pytest.approx(1 / 3)
    assert zh["f1"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    # the SQuAD rules on the same text: no spaces, so F1 collapses to exact match
    en = qa_metrics(preds, golds, language="en")
    assert en["f1"] == pytest.approx(en["exact_match"])


# ----- generation -----


def test_chinese_generation_metrics_score_characters():
    out = generation_metrics(["今天天气很好"], [["今天天气不错"]])
    assert out["rouge1"] == pytest.approx(4 / 6)  # 今 天 天 气 shared of 6
    assert out["rouge2"] == pytest.approx(3 / 5)  # 今天 天天 天气 shared of 5 bigrams
    assert out["exact_match"] == 0.0
    assert out["generated_words"] == 6
    assert out["bleu"] > 0  # sacrebleu's zh tokenizer splits the characters; 13a would see one word
    assert generation_metrics(["你好，世界！"], [["你好世界"]])["exact_match"] == 1.0
    assert normalise_chinese("你好， 世界!") == "你好世界"
    # English is scored as before
    assert generation_metrics(["The cats sat"], [["the cat sat"]])["rouge1"] == pytest.approx(1.0)


# ----- CMRC answers with a wrong offset -----


def _squad(tmp_path: Path, answers: list[dict]) -> Path:
    context = "北京大学创建于1898年，初名京师大学堂，是中国近代第一所国立大学。"
    obj = {"version": "v1.0", "data": [{"title": "北大", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "北京大学创建于哪一年？", "answers": answers}]}]}]}
    path = tmp_path / "cmrc.json"
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def _parse(path: Path, skip: bool = False):
    from tuneforge.data.readers import BadRows, ReadOptions
    from tuneforge.tasks.qa.data import parse_records, read_squad

    bad = BadRows(skip=skip)
    return parse_records(read_squad(path, ReadOptions(), bad), bad), bad


def test_a_bad_offset_keeps_the_good_answers_and_is_listed(tmp_path):
    path = _squad(tmp_path, [{"text": "1898年", "answer_start": 7},
                             {"text": "1898", "answer_start": 3},  # wrong offset, text in the context
                             {"text": "一八九八年", "answer_start": -1}])  # not in the context at all
    [ex], bad = _parse(path)
    assert ex["answers"] == [{"text": "1898年", "start": 7}, {"text": "1898", "start": 7}]
    assert ex["reference_answers"] == ["一八九八年"]
    actions = [r["action"] for r in ex["repairs"]]
    assert actions == ["moved to the occurrence at 7", "kept as a reference for the metrics, not a training span"]
    assert all("answers[" in r["field"] for r in ex["repairs"])
    assert not bad.rows

    from tuneforge.data.audit import audit_splits, format_audit

    report = audit_splits({"train": [ex]}, lambda e: e["context"], lambda e: [], None)
    assert report["repairs"]["count"] == 2
    assert "repaired:" in format_audit(report)


def test_a_question_with_no_answer_in_its_context_is_still_an_error(tmp_path):
    from tuneforge.data.readers import DataError

    path = _squad(tmp_path, [{"text": "一八九八年", "answer_start": 3}])
    with pytest.raises(DataError, match=r"qas\[0\].*answers\[0\]\.answer_start"):
        _parse(path)
    examples, bad = _parse(path, skip=True)
    assert examples == [] and len(bad.rows) == 1


def test_reference_only_answers_count_in_the_metrics():
    from tuneforge.tasks.qa.task import QaTask

    ex = {"context": "北京大学创建于1898年", "answers": [{"text": "1898年", "start": 7}],
          "reference_answers": ["一八九八年"]}
    task = QaTask.__new__(QaTask)
    task.language = "auto"
    assert task.metrics([{"start": None, "no_answer": True}], [ex])["exact_match"] == 0.0
    assert qa_metrics(["一八九八年"], [["1898年", "一八九八年"]])["exact_match"] == 1.0


# ----- a Chinese-vocabulary encoder through model: <path> -----

ZH_POS = ["房间干净服务好", "早餐很好吃", "位置方便交通好", "前台热情服务周到", "环境安静舒服"]
ZH_NEG = ["房间很脏很吵", "服务态度差", "早餐难吃价格贵", "设施旧空调坏了", "隔音差不推荐"]


@pytest.fixture(scope="module")
def tiny_chinese_bert(tmp_path_factory) -> Path:
    """A 2-layer random BERT whose WordPiece vocabulary holds single Chinese characters (as bert-base-chinese)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_zh_bert")
    chars = sorted(set("".join(ZH_POS + ZH_NEG) + "，的了是不我你他很好"))
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def test_a_chinese_encoder_trains_through_a_model_path(tiny_chinese_bert, tmp_path):
    import csv

    from tuneforge import config_from_dict, train
    from tuneforge.inference.predictor import Predictor

    rows = [(f"{a}，{b}", label) for texts, label in ((ZH_POS, "正面"), (ZH_NEG, "负面"))
            for a in texts for b in texts if a != b]  # 40 distinct reviews
    data = tmp_path / "zh.csv"
    with open(data, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    cfg = config_from_dict({
        "model": str(tiny_chinese_bert), "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"train": str(data), "max_length": 32, "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 8, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": ["majority"]},
    })
    result = train(cfg)
    audit = json.loads((result.run_dir / "audit.json").read_text(encoding="utf-8"))
    assert all(s["unknown_tokens"]["share"] == 0 for s in audit["splits"].values())
    report = json.loads((result.run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["metrics"]["test"]["accuracy"] > report["baselines"]["majority"]["accuracy"]
    out = Predictor.from_run_dir(result.run_dir).predict(["房间干净服务好"])
    assert out[0]["label"] in {"正面", "负面"}


# ----- streaming never ends inside a character -----


def test_streamer_drops_an_unfinished_character_at_the_end():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tuneforge.inference.streaming import WholeTextStreamer

    byte_vocab = {c: i for i, c in enumerate(sorted(set(pre_tokenizers.ByteLevel.alphabet())))}
    tok = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    ids = fast.encode("你好吗", add_special_tokens=False)
    assert len(ids) == 9  # three bytes per character
    streamer = WholeTextStreamer(fast, timeout=5)
    import torch

    streamer.put(torch.tensor([[ids[0]]]))  # the prompt, which the streamer skips
    for i in ids[:7]:  # stop two bytes into the third character
        streamer.put(torch.tensor([i]))
    streamer.end()
    pieces = list(streamer)
    text = "".join(pieces)
    assert text == "你好"
    text.encode("utf-8", errors="strict")
