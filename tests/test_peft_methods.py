"""PEFT builders one by one: AdaLoRA rank allocation, virtual tokens vs. pooling, bottleneck adapters, config checks."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.peft_harness import tiny_config, train_pair
from tuneforge.config import ConfigError, PeftConfig, config_from_dict
from tuneforge.peft_methods import adalora_ranks, adalora_schedule, apply_peft, find_peft_model
from tuneforge.peft_modules import VirtualTokenStripper
from tuneforge.tasks.classification.head import SequenceClassifier
from tuneforge.training.checkpoint import list_checkpoints


def tiny_bert(folder, seed: int = 0):
    from transformers import AutoModel

    torch.manual_seed(seed)
    return AutoModel.from_pretrained(folder, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).eval()


def test_adalora_hook_reallocates_ranks(tiny_bert_dir, tmp_path, monkeypatch):
    """With the hook in the loop, AdaLoRA prunes from r=4 towards target_r=2 per module, unevenly."""
    cfg = tiny_config("classification", "adalora", tmp_path, tiny_bert_dir,
                      train={"epochs": 5, "batch_size": 4}, peft={"r": 4, "target_r": 2})
    trained = train_pair(cfg, monkeypatch)
    peft_model = find_peft_model(trained.model)
    assert peft_model.peft_config["default"].rank_pattern, "update_and_allocate never allocated a rank pattern"
    last = list_checkpoints(trained.run_dir / "checkpoints")[-1]  # the final state (best/ may predate pruning)
    ranks = adalora_ranks(load_file(str(last / "model.safetensors")))
    assert len(ranks) == 12  # every linear layer of the 2 blocks: query, key, value, 2 × output.dense, intermediate
    assert sum(ranks.values()) < 4 * len(ranks), ranks  # the budget shrank from the initial uniform rank
    assert sum(ranks.values()) == 2 * len(ranks), ranks  # ... to target_r on average
    assert len(set(ranks.values())) > 1, ranks  # and the ranks are not uniform


def test_lora_targets_every_block_linear_layer_by_default_and_the_run_records_them(tiny_bert_dir, tmp_path,
                                                                                   monkeypatch):
    import yaml

    cfg = tiny_config("classification", "lora", tmp_path, tiny_bert_dir, train={"epochs": 1, "batch_size": 4})
    cfg.peft.target_modules = None
    trained = train_pair(cfg, monkeypatch)
    wanted = ["intermediate.dense", "output.dense", "self.key", "self.query", "self.value"]
    saved = yaml.safe_load((trained.run_dir / "config.yaml").read_text())
    assert saved["peft"]["target_modules"] == wanted
    adapted = {n.rsplit(".lora_A", 1)[0] for n, _ in find_peft_model(trained.model).named_parameters() if ".lora_A" in n}
    assert len(adapted) == 2 * 6 and not any("pooler" in n for n in adapted)


def test_adalora_schedule_leaves_a_budgeting_phase():
    for total in (1, 7, 10, 1000):
        s = adalora_schedule(total)
        assert s["tinit"] < s["total_step"] - s["tfinal"]


@pytest.mark.parametrize("method", ["prompt_tuning", "p_tuning", "prefix_tuning"])
def test_virtual_tokens_keep_hidden_states_aligned_with_the_mask(tiny_bert_dir, method):
    backbone, _ = apply_peft(tiny_bert(tiny_bert_dir), PeftConfig(method=method, num_virtual_tokens=3),
                             "FEATURE_EXTRACTION")
    assert isinstance(backbone, VirtualTokenStripper)
    model = SequenceClassifier(backbone, num_labels=2, pooling="mean", dropout=0.0).eval()
    ids = torch.tensor([[2, 40, 41, 42, 3, 0, 0], [2, 43, 3, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        assert hidden.shape[:2] == ids.shape  # virtual positions stripped
        # padding is invisible: the same sentences with extra padding give the same pooled logits
        wide_ids = torch.cat([ids, torch.zeros(2, 4, dtype=ids.dtype)], 1)
        logits = model(ids, mask)["logits"]
        wide = model(wide_ids, (wide_ids != 0).long())["logits"]
    torch.testing.assert_close(wide, logits, atol=1e-5, rtol=0)


def test_prompt_tuning_matches_a_manual_prepend(tiny_bert_dir):
    """The stripped states equal the body run on [prompt; tokens] with the mask extended by ones."""
    backbone, _ = apply_peft(tiny_bert(tiny_bert_dir), PeftConfig(method="prompt_tuning", num_virtual_tokens=3),
                             "FEATURE_EXTRACTION")
    peft_model = backbone.peft_model
    ids = torch.tensor([[2, 40, 41, 3, 0], [2, 43, 44, 45, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        got = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        prompts = peft_model.get_prompt(batch_size=2)  # (B, 3, H)
        embeds = torch.cat([prompts, peft_model.word_embeddings(ids)], 1)
        full_mask = torch.cat([torch.ones(2, 3, dtype=mask.dtype), mask], 1)
        want = peft_model.base_model(inputs_embeds=embeds, attention_mask=full_mask).last_hidden_state[:, 3:]
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("kind", "per_layer"), [("pfeiffer", 1), ("houlsby", 2)])
def test_bottleneck_adapter_starts_as_identity(tiny_bert_dir, kind, per_layer):
    base = tiny_bert(tiny_bert_dir)
    ids = torch.tensor([[2, 40, 41, 3]])
    with torch.no_grad():
        before = base(input_ids=ids).last_hidden_state.clone()
    adapted, hooks = apply_peft(base, PeftConfig(method="adapter", adapter_size=4, adapter_kind=kind))
    assert hooks == []
    names = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert sum(n.endswith("bottleneck.down.weight") for n in names) == 2 * per_layer  # 2 layers
    assert any("LayerNorm" in n for n in names) == (kind == "houlsby")
    with torch.no_grad():
        after = adapted(input_ids=ids).last_hidden_state
    torch.testing.assert_close(after, before)


def test_unknown_peft_method_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"peft.method: 'loraa' is not one of adalora, adapter, ia3, lora"):
        config_from_dict({"peft": {"method": "loraa"}})
    with pytest.raises(ConfigError, match="peft.adapter_kind"):
        config_from_dict({"peft": {"method": "adapter", "adapter_kind": "parallel"}})


def test_adalora_orthogonality_term_equals_peft_and_reaches_fit(tiny_bert_dir, tmp_path, monkeypatch):
    """peft adds AdaLoRA's ||PP^T - I|| penalty only to a loss the model returns itself; our heads compute the loss
    outside, so fit adds the same term: equal to what peft adds, differentiable, and wired in by build_model."""
    from peft import AdaLoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from tuneforge.peft_methods import adalora_orthogonality

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    model = get_peft_model(base, AdaLoraConfig(task_type="SEQ_CLS", init_r=4, target_r=2, total_step=10,
                                               orth_reg_weight=0.5))
    model.eval()
    with torch.no_grad():  # lora_B starts at zero: move both factors off orthogonality
        for n, p in model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.add_(torch.randn_like(p))
    ids, labels = torch.tensor([[2, 40, 41, 3]]), torch.tensor([1])
    out = model(input_ids=ids, labels=labels)
    penalty = adalora_orthogonality(model)(model)
    torch.testing.assert_close(out.loss - torch.nn.functional.cross_entropy(out.logits, labels), penalty)
    assert penalty > 0
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_A" in n)

    cfg = tiny_config("classification", "adalora", tmp_path, tiny_bert_dir, train={"epochs": 1, "batch_size": 4},
                      peft={"r": 4, "target_r": 2})
    seen = []
    import tuneforge.peft_methods as pm

    real = pm.adalora_orthogonality
    monkeypatch.setattr(pm, "adalora_orthogonality",
                        lambda m: (lambda model: seen.append(1) or real(m)(model)))
    train_pair(cfg, monkeypatch)
    assert seen, "fit never added AdaLoRA's orthogonality term"
