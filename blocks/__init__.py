"""Prefect blocks that configure providers, and the registry that turns them into providers.

``prefect block register -m blocks`` registers every block type exported here. Importing this
package registers the built-in providers (``aws``, ``local``) with ``load_provider``.
"""

from blocks.aws import AwsProviderBlock
from blocks.base import ProviderBlock
from blocks.local import LocalProviderBlock
from blocks.registry import (
    ProviderBlockInvalidError,
    ProviderNotFoundError,
    ProviderSettings,
    load_provider,
    register_provider,
    registered_providers,
    saved_block_slugs,
)

__all__ = [
    "AwsProviderBlock",
    "LocalProviderBlock",
    "ProviderBlock",
    "ProviderBlockInvalidError",
    "ProviderNotFoundError",
    "ProviderSettings",
    "load_provider",
    "register_provider",
    "registered_providers",
    "saved_block_slugs",
]
