"""What models exist, where their weights are, how to load them, what they cost."""

from model_registry.backends import LoadedModel
from model_registry.errors import ModelNotInstalled, ModelUnavailable, RegistryError, UnknownModel
from model_registry.pricing import price_of
from model_registry.registry import Availability, ModelRegistry
from model_registry.spec import ModelSpec, normalize_inference_type
from model_registry.tokens import TokenCounter
from model_registry.weights import WeightsLocator

__all__ = (
    "Availability",
    "LoadedModel",
    "ModelNotInstalled",
    "ModelRegistry",
    "ModelSpec",
    "ModelUnavailable",
    "RegistryError",
    "TokenCounter",
    "UnknownModel",
    "WeightsLocator",
    "normalize_inference_type",
    "price_of",
)
