"""``drylocal pull``: fetch a model's checkpoint from the Hugging Face hub into the drylocal model folder.

The server never downloads on its own (it must work offline); pulling is an explicit step a user runs
where the hub is reachable, or on another machine before copying the models folder over.

A pull is planned before anything is written: ``plan_pull`` lists the repo at the pinned commit and keeps
only the files the model's loader reads (model_registry.pull_layouts), so the multi-GB files a repo holds
beside them stay on the hub; ``check_room`` refuses a plan the disk cannot hold; ``install`` carries it out.

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

from model_registry.pull_layouts import EVERY_FILE, LAYOUTS, LORA, Layout, NotPullable, select_files
from model_registry.registry import ModelRegistry
from model_registry.spec import ModelSpec, Source

__all__ = (
    "MANIFEST",
    "PARTIAL_DIR",
    "ROOM_MARGIN_BYTES",
    "ChecksumMismatch",
    "NotEnoughRoom",
    "Pulled",
    "PullPlan",
    "RemoteFile",
    "SourcePlan",
    "check_room",
    "file_digest",
    "free_bytes",
    "install",
    "plan_pull",
    "sources_to_pull",
    "staging_dir",
)

MANIFEST = ".drylocal-verified.json"
PARTIAL_DIR = ".partial"
ROOM_MARGIN_BYTES = 512 << 20
"""Left free beyond the download: the manifest, the filesystem's own overhead, the server's results."""


class ChecksumMismatch(Exception):
    """A downloaded file is not the one the hub lists for it; the file has been deleted."""


class NotEnoughRoom(Exception):
    """The models folder's disk cannot hold the download; nothing has been written."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    """Path inside the repo."""
    size: int
    algorithm: str
    """``sha256`` for LFS files, ``git_sha1`` (git's blob id, what the hub lists) for the others."""
    digest: str
    """Empty where the hub lists no checksum; such a file is never installed."""


@dataclass(frozen=True)
class SourcePlan:
    """One repo's part of a pull: the files its loader reads, and which of them are still to fetch."""

    source: Source
    commit: str
    files: tuple[RemoteFile, ...]
    """What the model's loader reads of the repo: these are installed and verified."""
    missing: tuple[RemoteFile, ...]
    """Those of ``files`` not already in place with the hub's checksum: what this pull downloads."""
    skipped: tuple[RemoteFile, ...]
    """The repo's other files, left on the hub."""
    destination: Path
    staging: Path
    download_bytes: int
    """Bytes still to come: ``missing`` less what an interrupted pull left in ``staging``."""

    @property
    def size_bytes(self) -> int:
        return sum(file.size for file in self.files)


@dataclass(frozen=True)
class PullPlan:
    """What ``install`` will do, decided before anything is written (``drylocal pull --dry-run`` prints it)."""

    slug: str
    endpoint: str | None
    sources: tuple[SourcePlan, ...]

    @property
    def download_bytes(self) -> int:
        return sum(part.download_bytes for part in self.sources)


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


def plan_pull(registry: ModelRegistry, slug: str, *, endpoint: str | None = None) -> PullPlan:
    """List each of the model's repos on the hub and decide what to fetch; reads the disk, writes nothing."""
    from huggingface_hub import HfApi

    # huggingface_hub reads HF_ENDPOINT once at import; reading it here honours a mirror set later.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    spec = registry.get(slug)
    targets = sources_to_pull(spec)
    if not targets:
        raise ValueError(f"Model {spec.slug} has no Hugging Face source to pull; place its weights by hand.")
    api = HfApi(endpoint=endpoint)
    parts = []
    for label, source in targets:
        # A LoRA repo is laid out as a LoRA, not as its base model.
        layout = LORA if label.startswith("lora ") else LAYOUTS.get(spec.backend, EVERY_FILE)
        parts.append(_plan_source(api, registry, spec, source, layout, endpoint))
    return PullPlan(spec.slug, endpoint, tuple(parts))


def free_bytes(folder: Path) -> int:
    """Free space on the disk that holds ``folder``, or will once it is made."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_room(plan: PullPlan, free: int) -> None:
    """Refuse a plan whose downloads, with ``ROOM_MARGIN_BYTES`` to spare, do not fit in ``free`` bytes:
    better to stop before the first byte than to fill the disk part-way through a 27 GB file."""
    from model_registry.model_store import human_bytes

    needed = plan.download_bytes
    if needed and needed + ROOM_MARGIN_BYTES > free:
        raise NotEnoughRoom(
            f"it needs {human_bytes(needed)} (and {human_bytes(ROOM_MARGIN_BYTES)} to spare) but the models "
            f"folder's disk has {human_bytes(free)} free; nothing was written. Free some space (`drylocal rm SLUG`) "
            "or set DRYLOCAL_HOME to a larger disk."
        )


def install(plan: PullPlan, *, report: Callable[[str], None] = lambda message: None) -> list[Pulled]:
    """Fetch what the plan lists as missing, verify it, and move each repo's files into its model folder."""
    pulled = []
    for part in plan.sources:
        fetched = _install(part, plan.endpoint, report)
        source = part.source
        where = part.destination / source.filename if source.filename else part.destination
        pulled.append(Pulled(where, part.commit, len(part.files), part.size_bytes, fetched))
    return pulled


def remote_files(api, source: Source) -> tuple[str, list[RemoteFile]]:
    """The commit the source's revision points at, and every file the repo holds there with its size and
    the checksum the hub lists."""
    info = api.model_info(source.repo_id, revision=source.revision, files_metadata=True)
    files = []
    for sibling in info.siblings or []:
        if sibling.lfs is not None:
            files.append(RemoteFile(sibling.rfilename, sibling.lfs.size, "sha256", sibling.lfs.sha256))
        else:
            digest = sibling.blob_id if sibling.size is not None else None
            files.append(RemoteFile(sibling.rfilename, sibling.size or 0, "git_sha1", digest or ""))
    return info.sha, files


def file_digest(path: Path, algorithm: str) -> str:
    hasher = _hasher(algorithm, path.stat().st_size)
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def _hasher(algorithm: str, size: int):
    return hashlib.sha256() if algorithm == "sha256" else hashlib.sha1(b"blob %d\0" % size)


def _plan_source(
    api, registry: ModelRegistry, spec: ModelSpec, source: Source, layout: Layout, endpoint: str | None
) -> SourcePlan:
    commit, listing = remote_files(api, source)
    by_path = {file.path: file for file in listing}

    def read_json(path: str) -> dict:
        return _read_json(source, commit, by_path[path], endpoint)

    try:
        wanted = select_files(layout, by_path, read_json, source.filename)
    except NotPullable as exc:
        hint = f" {spec.install_hint}" if spec.install_hint else ""
        raise NotPullable(f"{source.repo_id} cannot be pulled for {spec.backend}: {exc}.{hint}") from None
    if source.filename and not wanted:
        raise ValueError(f"{source.repo_id} has no file {source.filename} at revision {source.revision or 'main'}")
    if not wanted:
        raise NotPullable(f"{source.repo_id} holds none of the files the {spec.backend} loader reads")
    files = tuple(file for file in listing if file.path in wanted)
    for file in files:
        if not file.digest:
            raise ValueError(
                f"the hub lists no checksum for {file.path} in {source.repo_id}; drylocal does not install files it "
                "cannot verify"
            )
    destination = registry.locator.store_dir(source)
    staging = staging_dir(registry.locator.models_dir, source)
    recorded = _read_manifest(destination).get("files", {})
    missing = tuple(f for f in files if not _already_in_place(destination / f.path, f, recorded.get(f.path)))
    # Two paths with the same content share one staged blob; its bytes on disk count once.
    staged = sum(_staged_bytes(staging, file) for file in {f.digest: f for f in missing}.values())
    return SourcePlan(
        source=source,
        commit=commit,
        files=files,
        missing=missing,
        skipped=tuple(file for file in listing if file.path not in wanted),
        destination=destination,
        staging=staging,
        download_bytes=sum(file.size for file in missing) - staged,
    )


def _read_json(source: Source, commit: str, file: RemoteFile, endpoint: str | None) -> dict:
    """An index the plan needs (``model_index.json``), read into memory and verified like any download."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(source.repo_id, file.path, revision=commit, endpoint=endpoint)
    response = get_session().get(url, headers=build_hf_headers())
    hf_raise_for_status(response)
    data = response.content
    hasher = _hasher(file.algorithm, len(data))
    hasher.update(data)
    if hasher.hexdigest() != file.digest:
        raise ChecksumMismatch(f"{file.path} from {source.repo_id} failed verification; pull again")
    return json.loads(data)


def _staged_bytes(staging: Path, file: RemoteFile) -> int:
    """What an interrupted pull already holds of ``file``: all of it once verified, else its partial."""
    if (staging / file.digest).is_file():
        return file.size
    partial = staging / f"{file.digest}.incomplete"
    return min(partial.stat().st_size, file.size) if partial.is_file() else 0


def _install(part: SourcePlan, endpoint: str | None, report: Callable[[str], None]) -> int:
    """Fetch what is missing into the staging folder, then move it all into the model folder and record it."""
    staged = {
        file.path: _fetch_verified(part.source, part.commit, file, part.staging, endpoint, report) for file in part.missing
    }
    uses = Counter(staged.values())
    for path, blob in staged.items():
        target = part.destination / path
        target.parent.mkdir(parents=True, exist_ok=True)
        uses[blob] -= 1
        # Two repo paths with the same content share one staged blob: copy it for all but the last.
        (shutil.copyfile if uses[blob] else os.replace)(blob, target)
    recorded = _read_manifest(part.destination).get("files", {})
    kept = {path: entry for path, entry in recorded.items() if (part.destination / path).is_file()}
    kept.update({file.path: {"size": file.size, file.algorithm: file.digest} for file in part.files})
    manifest = {"repo_id": part.source.repo_id, "commit": part.commit, "verified_at": _now(), "files": kept}
    _write_manifest(part.destination, manifest)
    _remove_if_empty(part.staging)
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
