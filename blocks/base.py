"""The base of every provider block: a saved, named configuration that builds a provider."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from prefect.blocks.core import Block

from providers.base import Provider


class ProviderBlock(Block, ABC):
    """A Prefect block that turns its saved settings into a ``Provider``.

    Each subclass is one block type (``aws-provider``, ``local-provider``, ...) and names the
    short provider name it builds in ``provider_name``. Deriving from ``ABC`` directly keeps
    this interface itself out of ``prefect block register``.
    """

    provider_name: ClassVar[str]

    @abstractmethod
    def build_provider(self) -> Provider:
        """A ready provider configured from this block's fields."""
