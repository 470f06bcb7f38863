"""One loader per backend: ``load(spec, path, device) -> LoadedModel``."""
