"""``tuneforge push RUN REPO_ID``: export a run (``tuneforge export``) to a temp folder and upload it to the hub."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


class PushError(RuntimeError):
    """No token, offline, or the hub refused the upload; the message says which in one line."""


def push_run(run_dir: str | Path, repo_id: str, token: str | None = None, private: bool = False,
             license: str | None = None, atol: float = 1e-4, endpoint: str | None = None) -> str:
    """Export ``run_dir`` (parity-checked, with its model card) and upload it as the model repo ``repo_id``;
    returns the commit URL. ``endpoint``: a hub other than the default (``$HF_ENDPOINT`` or huggingface.co).

    >>> # push_run("runs/sst2_lora", "me/sst2-minilm", private=True)
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    from tuneforge.export import ExportError, export_run

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise PushError("HF_HUB_OFFLINE is set: uploads are disabled (unset it to push, or use "
                        "`tuneforge export RUN OUT` and upload the folder later)")
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as e:
        raise PushError(f"repo id {repo_id!r}: {_first_line(e)}") from None
    token = token or get_token()
    if not token:
        raise PushError("no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login`")
    with tempfile.TemporaryDirectory(prefix="tuneforge-push-") as tmp:
        try:
            export_run(run_dir, Path(tmp) / "model", atol=atol, repo_id=repo_id, license=license)
        except ExportError as e:
            raise PushError(f"export failed: {e}") from None
        api = HfApi(token=token, endpoint=endpoint)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(repo_id=repo_id, folder_path=Path(tmp) / "model", repo_type="model",
                                       commit_message=f"Upload {Path(run_dir).name} (TuneForge export)")
        except HfHubHTTPError as e:
            raise PushError(f"the hub refused the upload to {repo_id}: {_first_line(e)}") from None
        except ValueError as e:  # the hub's check of the card's metadata (validate-yaml) failed
            raise PushError(f"the hub refused the upload to {repo_id}: {_first_line(e)}") from None
        except _transport_errors() as e:  # no network, DNS, TLS, timeouts
            raise PushError(f"cannot reach the hub to upload {repo_id}: {_first_line(e)}") from None
    return str(getattr(commit, "commit_url", commit))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """OSError and the HTTP client's own error base (huggingface_hub 2 talks through httpx2, 1.x through httpx)."""
    import importlib

    found: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory (anything `tuneforge export` takes)")
    p.add_argument("repo_id", help="the hub model repo to create or update, as owner/name")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="a hub token with write access (default: HF_TOKEN or the saved login)")
    p.add_argument("--license", help="the model card's license (default: the packaged base model's, when known)")
    p.add_argument("--endpoint", help="a hub other than the default ($HF_ENDPOINT, else huggingface.co)")


def _run(args: argparse.Namespace) -> int:
    try:
        url = push_run(args.run_dir, args.repo_id, token=args.token, private=args.private, license=args.license,
                       endpoint=args.endpoint)
    except (PushError, FileNotFoundError) as e:
        print(f"tuneforge push: error: {e}", file=sys.stderr)
        return 1
    print(f"pushed {args.run_dir} to {args.repo_id}: {url}")
    return 0


def register(register_command: Any) -> None:
    register_command("push", "export a run and upload it to the Hugging Face hub (needs a token and network)",
                     _args, _run)
