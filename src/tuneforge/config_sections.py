"""The run configuration's sections: one dataclass per YAML section, each field with its default and help text.
Loading, overrides and cross-field checks live in ``tuneforge.config``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class SplitConfig:
    validation: float = _f(0.1, "Share of the train file held out for validation when data.validation is unset.")
    test: float = _f(0.1, "Share of the train file held out for test when data.test is unset.")
    stratify: bool = _f(True, "Keep label proportions equal across splits.")
    seed: int | None = _f(None, "Seed of the carving; null = the run's seed. Set it to keep one split while "
                                "`seed` varies the training (init, order, dropout).")
    group_duplicates: bool = _f(True, "Keep examples whose texts are equal after normalisation (the audit's exact-leak "
                                      "rule) in one split, so carving does not copy train texts into validation or "
                                      "test; sizes move by the duplicates moved.")


@dataclass
class DataConfig:
    train: str | list[str] | None = _f(None, "Training data: a file (CSV, TSV, JSON, JSONL, `lines`, Parquet, "
                                             "Arrow), a datasets save_to_disk folder (`folder?split=NAME` picks a "
                                             "split; else the one named like this field), a hub dataset "
                                             "`hf://owner/name?config=C&split=S` (needs the network), or a list of "
                                             "these read in order and concatenated.")
    validation: str | list[str] | None = _f(None, "Validation data, as data.train; carved from train when unset.")
    test: str | list[str] | None = _f(None, "Test data, as data.train; carved from train when unset.")
    format: str = _f("auto", "auto (by extension: .csv .tsv .json .jsonl .ndjson .parquet .pq .arrow .feather, "
                             ".txt = lines; for task ner .conll .iob .bio and CoNLL-shaped .txt = conll) | csv | tsv "
                             "| json | jsonl | lines | parquet | arrow | conll | squad | ...")
    columns: dict[str, str] | None = _f(None, "Rename columns as they are read, {name in the data: name the task "
                                              "reads}, for every task and source: {sentence: text} for "
                                              "classification, {question: prompt, answer: response} or {dialog: "
                                              "messages} for generation, {ner_tags: tags} for ner.")
    text_column: str = _f("text", "Column holding the input text.")
    text_pair_column: str | None = _f(None, "Second text column for sentence-pair tasks.")
    label_column: str = _f("label", "Column holding the label (a list or delimited string for multi-label).")
    multi_label: bool = _f(False, "Each row may carry several labels.")
    label_delimiter: str | None = _f(None, "Delimiter for multi-label strings, e.g. '|'.")
    labels: list[str] | None = _f(None, "Fixed label set and order; inferred from train when unset.")
    line_delimiter: str = _f("@", "For format `lines`: the text and label are split at the last occurrence.")
    encoding: str = _f("utf-8", "File encoding, e.g. latin-1.")
    target_suffix: str | None = _f(None, "For format `parallel`: the target file is the source file with this "
                                         "extension (train.en + de → train.de); found when only one sibling.")
    skip_bad_rows: bool = _f(False, "Skip malformed rows instead of failing; the audit counts them with reasons.")
    max_length: int = _f(128, "Maximum tokens per example, at most the model's position limit; longer inputs are "
                              "truncated and counted by the audit.")
    limit: int | None = _f(None, "Use only the first N training rows (after the split), for quick runs. The file's "
                                 "order is kept, so a file sorted by label can leave train with one class (an "
                                 "error; the audit warns when a validation or test limit does the same).")
    validation_limit: int | None = _f(None, "Use only the first N validation rows (after the split): generative "
                                            "tasks decode every validation prompt at each evaluation.")
    test_limit: int | None = _f(None, "Use only the first N test rows (after the split); the report says so.")
    shots_per_class: int | None = _f(None, "Few-shot: train on K examples per class drawn from the train split "
                                           "(stratified, seeded by `seed`; the drawn ids go to shots.json in the "
                                           "run). Validation and test stay whole. null = all of train.")
    split: SplitConfig = _f(None, "How a single file is split.", )
    near_duplicate_threshold: float = _f(0.9, "Jaccard similarity of word 3-shingles above which texts are near-duplicates.")

    def __post_init__(self) -> None:
        if self.split is None:
            self.split = SplitConfig()


@dataclass
class HeadConfig:
    pooling: str = _f("auto", "auto | mean | cls | last | pooler | mean_pooler: how token states become one "
                      "vector (pooler = the checkpoint's pretrained dense+tanh on [CLS], as in "
                      "AutoModelForSequenceClassification; mean_pooler = the mean and the pooler side by side). "
                      "auto = mean_pooler for encoders with a pretrained pooler, else mean; last for decoders.")
    dropout: float = _f(0.1, "Dropout before the classification layer.")


@dataclass
class LossConfig:
    class_weights: str | list[float] | None = _f(None, "None, 'auto' (inverse frequency) or a list per label.")
    label_smoothing: float = _f(0.0, "Label smoothing for cross-entropy.")


@dataclass
class EarlyStoppingConfig:
    metric: str = _f("auto", "Validation metric to watch; auto = the task's main metric.")
    mode: str = _f("max", "max or min.")
    patience: int | None = _f(3, "Evaluations without improvement before stopping; null disables.")
    min_delta: float = _f(0.0, "Smallest change that counts as an improvement.")


@dataclass
class TrainConfig:
    epochs: float = _f(3, "Number of passes over the training split; 0 (without max_steps) trains nothing and "
                          "evaluates the untuned model.")
    max_steps: int | None = _f(None, "Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = _f(32, "Examples per micro-batch (with batch_tokens: at most this many).")
    batch_tokens: int | None = _f(None, "Token budget per micro-batch: items x the longest item's length (the padded "
                                        "size) stays <= this, so short items share big batches and long ones get "
                                        "small ones, up to batch_size items; needs batching: length_grouped. "
                                        "null = a fixed batch_size.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step.")
    lr: float = _f(5e-5, "Peak learning rate for the backbone.")
    head_lr: float | None = _f(None, "Learning rate for new head parameters; defaults to lr.")
    layer_lr_decay: float | None = _f(None, "Layer-wise lr decay: block i of L trains at lr * decay^(L-1-i), "
                                            "embeddings at lr * decay^L; null = one lr for the whole body.")
    optimizer: str = _f("adamw", "adamw | sgd.")
    momentum: float = _f(0.9, "SGD momentum.")
    weight_decay: float = _f(0.01, "Decoupled weight decay; never applied to biases and LayerNorm weights.")
    scheduler: str = _f("linear", "linear | cosine | constant, each with warmup.")
    warmup_ratio: float = _f(0.06, "Share of steps with linear warmup.")
    max_grad_norm: float | None = _f(1.0, "Gradient clipping norm; null disables.")
    dropout: float | None = _f(None, "Override the backbone's dropout probabilities.")
    attention_dropout: float | None = _f(None, "Override only the attention-probability dropout (after "
                                               "train.dropout). 0 lets SDPA use its fused attention kernel, which "
                                               "keeps no T x T probability tensors (faster on long inputs); the "
                                               "accuracy effect depends on the data.")
    fast_dropout: bool = _f(True, "On CPU, draw dropout masks from 16-bit lanes of 64-bit random words instead of "
                                  "one Bernoulli sample per element: the same drop rate and scaling from fewer random "
                                  "draws; a different random stream than nn.Dropout. Covers nn.Dropout modules and "
                                  "the attention-probability dropout of sdpa models (training/fast_dropout.py).")
    active_vocab: bool = _f(True, "Full fine-tuning with AdamW: train only the word-embedding rows the training "
                                  "data uses; AdamW would only weight-decay the others, and that decay is applied "
                                  "as one product (same result to fp32 rounding), so steps update fewer rows "
                                  "(training/active_vocab.py). Not used with ema_decay.")
    ema_decay: float | None = _f(None, "Exponential moving average of the trainable weights (e.g. 0.999), updated "
                                       "after every optimizer step; validation, the best checkpoint and the final "
                                       "model use the average. null = off.")
    precision: str = _f("auto", "auto (bf16 on a bf16 GPU, or on a CPU where a bf16 matmul measures >= 1.3x "
                               "fp32's speed; else fp32) | bf16 | fp32.")
    batching: str = _f("length_grouped", "length_grouped (dynamic padding, less waste) | random.")
    feature_cache: bool = _f(True, "With a frozen bottom (head_only, top_k): run the frozen layers once, in eval mode "
                                   "(no dropout in them), and train from their cached outputs; false = every step.")
    eval_every: int = _f(0, "Validate every N optimizer steps (0 = only at epoch ends).")
    save_every: int = _f(0, "Checkpoint every N optimizer steps (0 = at each evaluation).")
    keep_checkpoints: int = _f(2, "How many step checkpoints to keep (the newest); 0 = keep all.")
    early_stopping: EarlyStoppingConfig = _f(None, "Stop when the validation metric stops improving.")
    resume: bool = _f(False, "Continue from the latest checkpoint in output_dir. Refused when the run there was "
                             "trained with other settings or data (the message lists what differs).")
    overwrite: bool = _f(False, "A fresh run into an output_dir that already holds files is refused unless this is "
                                "true; then the old run's files are removed first.")
    gradient_checkpointing: bool = _f(False, "Recompute activations during backpropagation instead of keeping them: "
                                             "less memory, slower steps (roughly one more forward pass each).")
    num_threads: int | None = _f(None, "torch intra-op threads; default = physical cores.")
    progress: bool = _f(True, "Show a progress bar.")
    log_every: int = _f(10, "Write train loss to metrics.jsonl every N steps.")
    trackers: list[str] = _f(["tensorboard"], "Where train and validation scalars also go: tensorboard (run_dir/tb) "
                                              "| mlflow (the tracking extra; $MLFLOW_TRACKING_URI, else a local file "
                                              "store next to the run: <output_dir>/../mlruns; the report and best "
                                              "weights are logged as artifacts) | wandb (when installed).")

    def __post_init__(self) -> None:
        if self.early_stopping is None:
            self.early_stopping = EarlyStoppingConfig()


@dataclass
class FreezeConfig:
    policy: str = _f("full", "full (train all) | top_k | head_only | bitfit. With peft.method set, the method "
                             "decides what trains, so any other policy is refused.")
    k: int = _f(2, "For top_k: how many of the top transformer layers train.")
    embeddings: bool = _f(False, "Freeze the word-embedding matrix (position/type embeddings and their LayerNorm "
                                 "still train): its gradient, clipping and optimizer update are skipped, so steps "
                                 "are faster and accuracy may drop. Refused for tied or grown vocabularies and "
                                 "together with peft.method.")


@dataclass
class PeftConfig:
    method: str | None = _f(None, "lora | adalora | ia3 | prefix_tuning | prompt_tuning | p_tuning | adapter.")
    r: int = _f(8, "LoRA rank (initial rank for AdaLoRA).")
    alpha: int = _f(16, "LoRA scaling alpha.")
    dropout: float = _f(0.1, "Dropout inside the adapter.")
    target_modules: list[str] | None = _f(None, "Module names to adapt. Unset: LoRA/AdaLoRA adapt every linear layer of "
                                                  "the transformer blocks; IA3 uses peft's per-architecture default.")
    num_virtual_tokens: int = _f(20, "Prefix/prompt length for prompt-learning methods.")
    target_r: int = _f(4, "AdaLoRA: average target rank.")
    adapter_size: int = _f(64, "Bottleneck adapter width.")
    adapter_kind: str = _f("pfeiffer", "Bottleneck adapter placement: pfeiffer | houlsby.")


@dataclass
class EvalConfig:
    baselines: list[str] = _f(["majority", "zero_shot"], "Baselines scored on the test split next to the tuned model.")
    batch_size: int = _f(64, "Batch size for evaluation and prediction.")
    oos_label: str | None = _f(None, "Gold label that marks out-of-scope evaluation rows (it never occurs in train). "
                                     "The report then adds oos_recall, in_scope_accuracy and in_scope_coverage per "
                                     "split at the abstention threshold chosen on validation.")
    slices: list[str] = _f([], "Test-split slices in report.html, each with confidence intervals and significant "
                               "gaps to the rest flagged: length (word-count quartiles) | source (the data file) | "
                               "the name of any other column in the data file (e.g. a group column).")
    language: str = _f("auto", "Language the text metrics assume: en (SQuAD-style words, ROUGE with stemming, "
                               "BLEU 13a) | zh (CMRC 2018 character segmentation for QA, ROUGE over characters, "
                               "BLEU zh tokenizer) | auto (zh when at least 20% of the references' characters "
                               "are Chinese).")
    counterfactuals: str | None = _f(None, "Counterfactual template file (YAML): sentence pairs that differ only in "
                                           "a group term; the report gives the prediction flip rate and mean "
                                           "probability shift per term pair. Built-in sets: sentiment_en, "
                                           "intents_en. null = none.")


@dataclass
class CalibrationConfig:
    """Confidence of single-label classification runs: temperature scaling and abstention, fitted on validation."""

    enabled: bool = _f(True, "Fit a temperature on validation after training (calibration.json in the run); "
                             "predict and serve return calibrated probabilities; the report adds ece and "
                             "ece_before_calibration.")
    bins: int = _f(15, "Equal-width confidence bins for the expected calibration error.")
    oos_score: str = _f("auto", "Out-of-scope score: max_softmax | energy | distance (cosine similarity of the "
                                "sentence vector to the nearest class centroid of training rows) | auto (the "
                                "highest validation AUROC against eval.oos_label rows; max_softmax when validation "
                                "has none).")
    rule: str = _f("auto", "How the abstention threshold is chosen on validation: oos_recall (lowest threshold "
                           "rejecting `target` of the OOS rows) | coverage (answer `target` of the rows) | "
                           "precision (widest coverage whose accuracy >= `target`) | auto (oos_recall when "
                           "validation has OOS rows, else coverage).")
    target: float | None = _f(None, "Target of the rule; null = 0.7 for oos_recall, 0.9 for coverage and precision.")
    abstain: bool = _f(True, "Predictions under the threshold carry unknown: true (the label stays the best guess).")


@dataclass
class AssistantConfig:
    """``tuneforge assist``: intent → answer template, else FAQ retrieval, else hand-off to a human."""

    answers: str | None = _f(None, "Answers file (YAML): intent → template with {slots}, optional FAQ pairs. "
                                   "Relative paths: the current directory, then the run directory.")
    faq_encoder: str = _f("run", "Bi-encoder for FAQ retrieval: run (the classifier's own body, mean-pooled) | "
                                 "minilm | a folder saved by the FAQ fine-tuning.")
    faq_min_similarity: float = _f(0.75, "Cosine similarity the best FAQ question must reach to answer.")
    handoff_top_k: int = _f(3, "Candidate intents passed to a human on hand-off.")
    reword: str | None = _f(None, "Reword intent and FAQ answers with a causal LM: a generation run directory or a "
                                  "model (smollm2, a folder, a hub id). A rewrite is used only when it keeps every "
                                  "number, link and slot value, most content words, adds no number or link and "
                                  "is at most about twice as long; else the template answers. null = off.")
    reword_min_word_recall: float = _f(0.6, "Share of the answer's content words a rewrite must keep.")
    feedback: str = _f("feedback.jsonl", "Feedback JSONL (relative to the run directory), appended and fsynced "
                                         "per record; rows carry the run's text and label columns.")


@dataclass
class FewshotConfig:
    """Prompt learning and few-shot methods (tuneforge/prompting); ``data.shots_per_class`` sets the label budget."""

    method: str = _f("none", "none (ordinary fine-tuning, on the k-shot draw when data.shots_per_class is set) | "
                             "setfit (contrastive sentence-encoder tuning + logistic-regression head; encoders) | "
                             "prompt (label-word fine-tuning of a decoder: task classification_generative) | "
                             "icl (demonstrations in a decoder's prompt; no training) | zero_shot (no training: "
                             "label descriptions for encoders, label-word likelihood for decoders).")
    prompt: str | None = _f(None, "Prompt file (configs/prompting/*.yaml): instruction, input, verbaliser, "
                                  "description(s); relative to the config file. Unset: defaults from the label names.")
    instruction: str | None = _f(None, "Instruction over the prompt file's; {labels} = the label words.")
    verbaliser: dict[str, list[str]] | None = _f(None, "Label → answer words over the prompt file's; the first word "
                                                       "is the one a decoder is taught or shown.")
    descriptions: dict[str, list[str]] | None = _f(None, "Label → sentences an encoder compares texts with.")
    k: int = _f(4, "icl: demonstrations per label in each prompt.")
    selection: str = _f("random", "icl: random (one draw per seed for every query) | nearest (per query, by "
                                  "sentence-embedding similarity from fewshot.embedder).")
    order: str = _f("random", "icl: random | grouped (by label) | similar_last (most similar next to the query).")
    calibrate: bool = _f(True, "icl and decoder zero-shot: contextual calibration (divide by the label "
                               "probabilities of content-free inputs).")
    length_normalise: bool = _f(True, "Decoders: score a label word by its mean token log-likelihood, not the sum.")
    max_prompt_tokens: int | None = _f(None, "icl: prompt + answer budget; longer prompts lose demonstrations and "
                                             "are listed in the report. null = the model's context length.")
    embedder: str = _f("minilm", "icl nearest: the sentence encoder that measures similarity.")
    setfit_iterations: int = _f(20, "setfit: positive and negative pairs per training example.")
    setfit_epochs: int = _f(1, "setfit: passes over the pairs.")
    setfit_batch_size: int = _f(16, "setfit: pairs per batch.")
    setfit_lr: float = _f(2e-5, "setfit: learning rate of the sentence encoder.")
    setfit_descriptions: bool = _f(False, "setfit: add the prompt's label descriptions as labelled training "
                                          "examples (what zero-shot knows, for the smallest budgets).")


@dataclass
class GenerationConfig:
    """Options of the generative tasks (generation, classification_generative); the other tasks ignore them."""

    schema: str = _f("auto", "Record shape: auto | alpaca | sharegpt | messages | prompt_response | summarization "
                             "(dialogsum, samsum) | translation (parallel files or source/target records).")
    instruction: str | None = _f(None, "User instruction put before the text for summarization, translation and "
                                       "classification_generative; a per-schema default when unset.")
    system_prompt: str | None = _f(None, "System message added to every conversation that has none.")
    packing: bool = _f(False, "Pack each micro-batch's examples into rows of data.max_length tokens; attention and "
                              "loss stay inside each example (block-diagonal mask, positions restart).")
    max_new_tokens: int = _f(64, "Longest generated answer, in tokens.")
    num_beams: int = _f(1, "Beam width; 1 = greedy (or sampling with do_sample).")
    do_sample: bool = _f(False, "Sample instead of greedy/beam decoding.")
    temperature: float = _f(1.0, "Sampling temperature (do_sample only).")
    top_p: float = _f(1.0, "Nucleus sampling mass (do_sample only).")
    eval_batch_size: int = _f(16, "Prompts the zero-shot baseline decodes together (validation, test and "
                                  "prediction use eval.batch_size).")


@dataclass
class SpanConfig:
    """Options of the span tasks (ner, relation, qa); the other tasks ignore them."""

    label_all_subwords: bool = _f(False, "ner: train on every subword (continuations get I- tags); "
                                         "false = first subword only, the rest are ignored (-100).")
    negative_relation: str = _f("Other", "relation: the no-relation label, left out of the macro-F1 "
                                         "(SemEval-2010 Task 8 convention).")
    doc_stride: int = _f(128, "qa: tokens shared by consecutive context windows (HF run_qa's doc_stride); 0 = no "
                              "overlap; below data.max_length - max_question_length - 3.")
    max_answer_length: int = _f(30, "qa: longest answer span, in tokens, that decoding may return.")
    max_question_length: int = _f(64, "qa: questions longer than this many tokens are cut.")
    null_score_threshold: float = _f(0.0, "qa (SQuAD v2.0): answer 'no answer' when the null score beats the "
                                           "best span by more than this.")


@dataclass
class StageConfig:
    name: str = _f("", "Short stage name (used in the stage's folder name and the report).")
    data: dict[str, Any] = _f({}, "Overrides of the `data` section for this stage: its own train/validation/test "
                                  "files, columns, format, split. Unset keys keep the top-level `data` values.")
    labels: list[str] | None = _f(None, "Keep only rows whose label is in this list (a filter of one dataset by "
                                        "label); applied to every split after the label mapping.")
    label_map: dict[str, str] | None = _f(None, "Rename labels before filtering (domain-incremental sequences that "
                                                "share one label set across datasets).")
    limit: int | None = _f(None, "Keep a seeded random sample of this many training rows (after filtering).")
    test_limit: int | None = _f(None, "Keep a seeded random sample of this many test rows (after filtering).")
    train: dict[str, Any] = _f({}, "Overrides of the `train` section for this stage (epochs, lr, ...).")


@dataclass
class ContinualConfig:
    stages: list[dict[str, Any]] = _f([], "Ordered stages for `tuneforge continual`, each a mapping with the "
                                          "fields of StageConfig (name, data, labels, label_map, limit, "
                                          "test_limit, train); each trains on its own data and is then scored on "
                                          "every stage's test split.")
    scenario: str = _f("task_incremental", "task_incremental (a head per stage over one backbone) | "
                                           "class_incremental (one head over the union of the stages' labels) | "
                                           "domain_incremental (one head, one shared label set).")
    strategy: str = _f("naive", "naive | replay | ewc | lwf | adapter_per_stage | joint (all data seen so far: "
                                "the reference upper bound).")
    replay_fraction: float = _f(0.1, "replay: buffer size as a share of the earlier stages' training rows.")
    replay_size: int | None = _f(None, "replay: a fixed buffer size in rows (overrides replay_fraction).")
    replay_sampling: str = _f("reservoir", "replay: reservoir (uniform over everything seen) | class_balanced "
                                           "(equal rows per label).")
    replay_batch_size: int = _f(16, "replay (task-incremental): rows of one earlier stage replayed through its "
                                    "own head at every training step.")
    ewc_lambda: float = _f(1.0, "ewc: weight of the penalty; the Fisher is scaled to mean 1 over the "
                                 "penalised weights, so the weight depends less on the model.")
    ewc_gamma: float = _f(1.0, "ewc: online EWC decay of the earlier Fisher at each new stage (1 = plain sum).")
    ewc_samples: int = _f(200, "ewc: training rows (one gradient each) that estimate the diagonal Fisher after "
                               "each stage.")
    lwf_alpha: float = _f(1.0, "lwf: weight of the distillation term.")
    lwf_temperature: float = _f(2.0, "lwf: softmax temperature of the distillation.")
    adapter_lr: float | None = _f(1e-3, "adapter_per_stage: learning rate of every stage's adapter and head "
                                        "(over train.lr and each stage's own lr): LoRA wants ~10x the rate of "
                                        "full fine-tuning; null = train.lr as configured.")
    loss_mask: str = _f("none", "One head (class/domain-incremental): the logits each stage's cross-entropy runs "
                                "over. none = every label; seen = the classes of this and earlier stages; current "
                                "= this stage's classes for its own rows (the labels trick) and the classes seen "
                                "so far for replayed rows. Masked logits get no gradient, so the earlier classes "
                                "are not pushed down by rows that are not theirs.")

    def __post_init__(self) -> None:
        # typed here rather than in the hint, so the field docs list one key for the stage list
        from tuneforge.config_typing import build_section

        self.stages = [s if isinstance(s, StageConfig) else build_section(StageConfig, s, f"continual.stages[{i}]")
                       for i, s in enumerate(self.stages)]


@dataclass
class SearchConfig:
    """``tuneforge search``: hyper-parameter search with Optuna (TPE sampling, pruning on the validation curve)."""

    space: dict[str, Any] = _f({}, "Config key → values to try: a list (choices), {log_uniform: [lo, hi]}, "
                                   "{uniform: [lo, hi]} or {int: [lo, hi]}; e.g. train.lr: {log_uniform: [1e-5, "
                                   "1e-3]}, train.batch_size: [16, 32].")
    metric: str = _f("auto", "Validation metric to optimise (never the test split); auto = the task's main metric.")
    trials: int | None = _f(20, "Finished trials (complete or pruned) the study aims at, counting earlier runs of a "
                                "resumed search; null = until search.timeout.")
    timeout: float | None = _f(None, "Wall-clock budget of one `tuneforge search` call, in seconds; null = none.")
    pruner: str = _f("median", "Stop unpromising trials at a validation: median (below the median of earlier "
                               "trials at the same step) | successive_halving | none.")
    include_default: bool = _f(True, "The first trial runs the config's own values for the searched keys, so the "
                                     "result shows whether the search beat them.")
    output_dir: str | None = _f(None, "Search folder (study.db, trials/, search.html); null = <output_dir>-search.")


@dataclass
class RecommendConfig:
    """Options of the recommendation task: data.train is the interaction log, one row per (user, item, time)."""

    items: str | None = _f(None, "Item table (CSV/TSV): one row per item with an id column and text columns.")
    item_tags: str | None = _f(None, "Optional CSV of free-text tags per item (item id and tag columns); each "
                                     "item's distinct tags fill the {tags} field of recommend.item_template.")
    item_id_column: str = _f("item_id", "Item id column of the item table, the tags file and the log.")
    user_column: str = _f("user_id", "User id column of the interaction log.")
    time_column: str = _f("timestamp", "Time column of the log (numbers, e.g. Unix seconds): orders each user's "
                                       "interactions for the split and the histories.")
    rating_column: str | None = _f(None, "Optional rating column of the log, used with min_rating.")
    min_rating: float | None = _f(None, "Keep only interactions rated at least this; null = every interaction "
                                        "is a positive (implicit feedback).")
    tag_column: str = _f("tag", "Tag column of recommend.item_tags.")
    list_delimiter: str = _f("|", "Delimiter of list-valued item fields (e.g. genres 'Comedy|Drama'); shown "
                                  "joined with ', '.")
    split: str = _f("leave_last_out", "Per-user split by time: leave_last_out (the last interaction is test, the "
                                      "one before validation) | last_fraction (the last test_fraction of each "
                                      "user's interactions are test, the one before validation).")
    test_fraction: float = _f(0.2, "last_fraction: share of each user's interactions (rounded, at least 1) "
                                   "held out for test.")
    min_interactions: int = _f(3, "Users with fewer interactions are only used for training.")
    history_length: int = _f(20, "Most recent items, before the target, that make up the user's text.")
    history_template: str = _f("{title}", "Text of one history item: item-table columns (and {tags}) in braces; "
                                          "the user's text is these, most recent first, joined with '; '.")
    item_template: str = _f("{title}. {genres}. {tags}", "Text of an item to score: item-table columns and {tags} "
                                                          "in braces; empty fields and their separators drop out.")
    item_max_length: int = _f(48, "Tokens per item text (data.max_length applies to the user's text).")
    targets_per_user: int | None = _f(20, "Training examples per user: a seeded sample of this many of the user's "
                                          "training interactions as targets (each with its own earlier history); "
                                          "null = all of them.")
    hard_negatives: int = _f(2, "Sampled negatives per training example besides the in-batch ones: items drawn "
                                "with probability popularity^negative_power, never one of the user's positives.")
    negative_power: float = _f(0.75, "Exponent on training popularity for drawing negatives (0 = uniform).")
    temperature: float = _f(0.05, "Softmax temperature of the in-batch loss over cosine similarities.")
    top_k: int = _f(10, "K of HR@K, NDCG@K and coverage@K.")
    cold_start_max: int = _f(5, "The cold-start slice: test targets with at most this many training interactions.")
    bootstrap: int = _f(1000, "Bootstrap resamples of the metrics' 95% intervals; 0 = no intervals.")
    als_factors: int = _f(64, "Baseline als: latent factors of implicit's AlternatingLeastSquares.")
    als_iterations: int = _f(15, "Baseline als: ALS iterations.")
    als_regularization: float = _f(0.05, "Baseline als: L2 regularisation.")
    rerank: str = _f("none", "Re-ranker of the bi-encoder's top rerank_k when serving: none | cross_encoder (fit "
                             "first with `tuneforge recommend RUN --fit-reranker`).")
    rerank_k: int = _f(20, "Candidates from the bi-encoder the re-ranker re-orders (and draws its training "
                           "negatives from); places below rerank_k keep the bi-encoder's order.")
    rerank_negatives: int = _f(3, "Cross-encoder training: negatives per target, a seeded draw from the "
                                  "bi-encoder's top rerank_k for that history, never one of the user's items.")
    rerank_examples: int | None = _f(1000, "Cross-encoder training: a seeded sample of this many training "
                                           "targets (history -> item); null = all of them.")
    rerank_max_length: int = _f(64, "Cross-encoder: tokens per (user text, item text) pair; the longer text is "
                                    "cut first: the history (most recent first, so its oldest titles go) unless "
                                    "an item's text is longer.")
    rerank_epochs: int = _f(1, "Cross-encoder training: passes over the sampled targets.")
    rerank_lr: float = _f(5e-5, "Cross-encoder training: peak learning rate.")
    rerank_batch_size: int = _f(8, "Cross-encoder training: targets per batch (each with its negatives).")


@dataclass
class RunConfig:
    model: str = _f("minilm", "minilm | smollm2 | mpnet | me5-small | a local path | a hub id.")
    task: str = _f("classification", "Task name from the task registry.")
    output_dir: str = _f("runs/run", "Run directory: config, checkpoints, metrics, report.")
    seed: int = _f(42, "Seed for splits, initialisation, shuffling and dropout.")
    data: DataConfig = _f(None, "Input files and columns.")
    head: HeadConfig = _f(None, "Task head.")
    loss: LossConfig = _f(None, "Loss options.")
    train: TrainConfig = _f(None, "Optimisation and loop.")
    freeze: FreezeConfig = _f(None, "Which parameters train.")
    peft: PeftConfig = _f(None, "Parameter-efficient fine-tuning.")
    eval: EvalConfig = _f(None, "Evaluation and baselines.")
    fewshot: FewshotConfig = _f(None, "Prompt learning and few-shot methods (zero-shot, icl, setfit, prompt).")
    calibration: CalibrationConfig = _f(None, "Confidence calibration and abstention (classification).")
    assistant: AssistantConfig = _f(None, "The customer-service assistant built on this run (tuneforge assist).")
    generation: GenerationConfig = _f(None, "Generative tasks: data schema, packing and decoding.")
    span: SpanConfig = _f(None, "Span-task options (ner, relation, qa).")
    recommend: RecommendConfig = _f(None, "Recommendation task: item table, time split, user text, negatives.")
    search: SearchConfig = _f(None, "Hyper-parameter search (tuneforge search); tuneforge train ignores it.")
    continual: ContinualConfig = _f(None, "Continual learning: a sequence of stages (tuneforge continual).")
    source: str | None = field(default=None, metadata={"help": "The YAML file this came from.", "internal": True})

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None and _is_section(f.type):
                setattr(self, f.name, _section_type(f.type)())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


def _section_type(tp: Any) -> type:
    if isinstance(tp, str):
        return globals()[tp.split("|")[0].strip()]
    return tp


def _is_section(tp: Any) -> bool:
    name = tp if isinstance(tp, str) else getattr(tp, "__name__", "")
    return isinstance(name, str) and name.split("|")[0].strip().endswith("Config")
