"""How ``llm`` nodes are answered: ``replay`` (recorded traces) or ``litellm`` (real providers)."""

from flowfront.backends.base import Backend, CallRequest, Completion

__all__ = ["Backend", "CallRequest", "Completion"]
