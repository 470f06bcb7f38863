"""``drylocal pull``: fetch a model's checkpoint from the Hugging Face hub into the drylocal model folder.

The server never downloads on its own (it must work offline); pulling is an explicit step a user runs
where the hub is reachable, or on another machine before copying the models folder over.
"""

from __future__ import annotations

from pathlib import Path

from model_registry.registry import ModelRegistry
from model_registry.spec import ModelSpec, Source

__all__ = ("pull", "sources_to_pull")


def sources_to_pull(spec: ModelSpec) -> list[tuple[str, Source]]:
    """The model's own checkpoint, its extra components and its LoRAs: each one that lives on the hub."""
    found = [("model", spec.source), *spec.components.items(), *((f"lora {l.name}", l.source) for l in spec.loras)]
    return [(label, source) for label, source in found if source.repo_id]


def pull(registry: ModelRegistry, slug: str, *, endpoint: str | None = None) -> list[Path]:
    import os

    from huggingface_hub import snapshot_download

    # huggingface_hub reads HF_ENDPOINT once at import; reading it here honours a mirror set later.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    spec = registry.get(slug)
    targets = sources_to_pull(spec)
    if not targets:
        raise ValueError(f"Model {spec.slug} has no Hugging Face source to pull; place its weights by hand.")
    pulled = []
    for _, source in targets:
        destination = registry.locator.store_dir(source)
        snapshot_download(
            source.repo_id,
            revision=source.revision,
            local_dir=destination,
            allow_patterns=[source.filename] if source.filename else None,
            endpoint=endpoint,
        )
        pulled.append(destination / source.filename if source.filename else destination)
    return pulled
