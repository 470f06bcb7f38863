"""``drylocal pull``: fetch a model's checkpoint from the Hugging Face hub into the drylocal model folder.

The server never downloads on its own (it must work offline); pulling is an explicit step a user runs
where the hub is reachable, or on another machine before copying the models folder over.

Every file is checked against the checksum the hub lists for it (sha256 for LFS files, the git blob id
for the others) before anything can load it. Files arrive in a staging folder,
``<models>/.partial/<org>--<name>/``, named by that checksum: a pull that is interrupted leaves its bytes
there and the next one continues them with a Range request. A checkpoint moves into its model folder
only once all its files are verified, so a half-finished pull never looks installed. The model folder's
``.drylocal-verified.json`` records the verified files, their sizes and checksums, and the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from model_registry.registry import ModelRegistry
from model_registry.spec import ModelSpec, Source

__all__ = (
    "MANIFEST",
    "PARTIAL_DIR",
    "ChecksumMismatch",
    "Pulled",
    "RemoteFile",
    "file_digest",
    "pull",
    "sources_to_pull",
    "staging_dir",
)

MANIFEST = ".drylocal-verified.json"
PARTIAL_DIR = ".partial"


class ChecksumMismatch(Exception):
    """A downloaded file is not the one the hub lists for it; the file has been deleted."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    """Path inside the repo."""
    size: int
    algorithm: str
    """``sha256`` for LFS files, ``git_sha1`` (git's blob id, what the hub lists) for the others."""
    digest: str


@dataclass(frozen=True)
class Pulled:
    path: Path
    """What the weights locator finds: the repo's folder, or the one file a single-file source names."""
    commit: str
    files: int
    size_bytes: int
    fetched: int
    """Files downloaded by this pull; 0 when everything was already there and verified."""


def sources_to_pull(spec: ModelSpec) -> list[tuple[str, Source]]:
    """The model's own checkpoint, its extra components and its LoRAs: each one that lives on the hub."""
    found = [("model", spec.source), *spec.components.items(), *((f"lora {l.name}", l.source) for l in spec.loras)]
    return [(label, source) for label, source in found if source.repo_id]


def staging_dir(models_dir: Path, source: Source) -> Path:
    """Where a repo's files wait, partial or verified, until the whole checkpoint is in."""
    assert source.repo_id, "only hub sources are pulled"
    return models_dir / PARTIAL_DIR / source.repo_id.replace("/", "--")


def pull(
    registry: ModelRegistry,
    slug: str,
    *,
    endpoint: str | None = None,
    report: Callable[[str], None] = lambda message: None,
) -> list[Pulled]:
    from huggingface_hub import HfApi

    # huggingface_hub reads HF_ENDPOINT once at import; reading it here honours a mirror set later.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    spec = registry.get(slug)
    targets = sources_to_pull(spec)
    if not targets:
        raise ValueError(f"Model {spec.slug} has no Hugging Face source to pull; place its weights by hand.")
    api = HfApi(endpoint=endpoint)
    pulled = []
    for _, source in targets:
        commit, files = remote_files(api, source)
        destination = registry.locator.store_dir(source)
        staging = staging_dir(registry.locator.models_dir, source)
        fetched = _install(source, commit, files, destination, staging, endpoint, report)
        where = destination / source.filename if source.filename else destination
        pulled.append(Pulled(where, commit, len(files), sum(f.size for f in files), fetched))
    return pulled


def remote_files(api, source: Source) -> tuple[str, list[RemoteFile]]:
    """The commit the source's revision points at, and each wanted file with the checksum the hub lists."""
    info = api.model_info(source.repo_id, revision=source.revision, files_metadata=True)
    files = []
    for sibling in info.siblings or []:
        if source.filename and sibling.rfilename != source.filename:
            continue
        if sibling.lfs is not None:
            files.append(RemoteFile(sibling.rfilename, sibling.lfs.size, "sha256", sibling.lfs.sha256))
        elif sibling.blob_id and sibling.size is not None:
            files.append(RemoteFile(sibling.rfilename, sibling.size, "git_sha1", sibling.blob_id))
        else:
            raise ValueError(
                f"the hub lists no checksum for {sibling.rfilename} in {source.repo_id}; drylocal does not install "
                "files it cannot verify"
            )
    if source.filename and not files:
        raise ValueError(f"{source.repo_id} has no file {source.filename} at revision {source.revision or 'main'}")
    return info.sha, files


def file_digest(path: Path, algorithm: str) -> str:
    if algorithm == "sha256":
        hasher = hashlib.sha256()
    else:
        hasher = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _install(
    source: Source,
    commit: str,
    files: list[RemoteFile],
    destination: Path,
    staging: Path,
    endpoint: str | None,
    report: Callable[[str], None],
) -> int:
    """Fetch what is missing into ``staging``, then move it all into ``destination`` and record it."""
    recorded = _read_manifest(destination).get("files", {})
    staged: dict[str, Path] = {}
    for file in files:
        if not _already_in_place(destination / file.path, file, recorded.get(file.path)):
            staged[file.path] = _fetch_verified(source, commit, file, staging, endpoint, report)
    uses = Counter(staged.values())
    for path, blob in staged.items():
        target = destination / path
        target.parent.mkdir(parents=True, exist_ok=True)
        uses[blob] -= 1
        # Two repo paths with the same content share one staged blob: copy it for all but the last.
        (shutil.copyfile if uses[blob] else os.replace)(blob, target)
    kept = {path: entry for path, entry in recorded.items() if (destination / path).is_file()}
    kept.update({file.path: {"size": file.size, file.algorithm: file.digest} for file in files})
    _write_manifest(destination, {"repo_id": source.repo_id, "commit": commit, "verified_at": _now(), "files": kept})
    _remove_if_empty(staging)
    return len(staged)


def _already_in_place(target: Path, file: RemoteFile, recorded: dict | None) -> bool:
    """The file is there with the hub's checksum: recorded by an earlier pull, or (placed by hand or by an
    older drylocal) hashed now."""
    if not target.is_file() or target.stat().st_size != file.size:
        return False
    if recorded is not None and recorded.get(file.algorithm) == file.digest:
        return True
    return file_digest(target, file.algorithm) == file.digest


def _fetch_verified(
    source: Source, commit: str, file: RemoteFile, staging: Path, endpoint: str | None, report: Callable[[str], None]
) -> Path:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    verified = staging / file.digest
    if verified.is_file():
        return verified  # verified by a pull that stopped before the rest of the checkpoint was in
    partial = staging / f"{file.digest}.incomplete"
    staging.mkdir(parents=True, exist_ok=True)
    if partial.is_file() and partial.stat().st_size > file.size:
        partial.unlink()
    have = partial.stat().st_size if partial.is_file() else 0
    if have:
        report(f"resuming {file.path} at {have} of {file.size} bytes")
    url = hf_hub_url(source.repo_id, file.path, revision=commit, endpoint=endpoint)
    # http_get shows the progress bar, follows the CDN redirect and, when the connection drops, resumes
    # within this pull; the partial file kept on disk is what lets the next pull resume after a kill.
    with partial.open("ab") as out:
        http_get(url, out, resume_size=have, headers=build_hf_headers(), expected_size=file.size, displayed_filename=file.path)
    actual = file_digest(partial, file.algorithm)
    if actual != file.digest:
        partial.unlink()
        label = "sha256" if file.algorithm == "sha256" else "git blob id"
        raise ChecksumMismatch(
            f"{file.path} failed verification: its {label} is {actual} but {source.repo_id} lists {file.digest}. "
            "The file was deleted; pull again, and if it fails again the hub or mirror serves a damaged copy."
        )
    os.replace(partial, verified)
    return verified


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _write_manifest(folder: Path, manifest: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, folder / MANIFEST)


def _remove_if_empty(staging: Path) -> None:
    for folder in (staging, staging.parent):
        try:
            folder.rmdir()
        except OSError:
            return


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
