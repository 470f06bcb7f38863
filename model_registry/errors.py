"""Errors of the model registry. The server maps them to dryAPI answers (422 on ``model``)."""

__all__ = ("CatalogError", "DuplicateModel", "ModelNotInstalled", "ModelUnavailable", "RegistryError", "UnknownModel")


class RegistryError(Exception):
    pass


class CatalogError(RegistryError):
    """A catalog or config file holds a row that is not a valid ModelSpec."""


class DuplicateModel(RegistryError):
    """Two rows claim the same slug or alias; raised at start-up, never resolved silently."""


class UnknownModel(RegistryError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"The selected model does not exist: {slug}")
        self.slug = slug


class ModelUnavailable(RegistryError):
    """The model is known but cannot run here; the message says why and how to fix it."""

    def __init__(self, slug: str, reason: str) -> None:
        super().__init__(reason)
        self.slug = slug
        self.reason = reason


class ModelNotInstalled(ModelUnavailable):
    pass
