"""The block of the local provider, which runs scripts on the Prefect worker itself."""

from __future__ import annotations

from typing import ClassVar

from blocks.base import ProviderBlock
from blocks.registry import register_provider
from providers.local import LocalProvider


class LocalProviderBlock(ProviderBlock):
    """Runs scripts on the machine of the Prefect worker itself, on the one target
    ``localhost``: bash, sh and python3, and PowerShell where ``pwsh`` is installed. It needs
    no cloud account, so it lets a new user run a real workflow at once.

    The block has no settings; saving one gives the local provider a name that deployments
    can refer to like any other provider block.

    Example:
        Save it once, then name it as a flow's provider:
        ```python
        from blocks import LocalProviderBlock

        LocalProviderBlock().save("this-worker")
        ```
        ```bash
        prefect deployment run 'run-script/<deployment>' --param provider=local-provider/this-worker
        ```
    """

    _block_type_name = "Local Provider"
    _block_type_slug = "local-provider"
    _description = "Runs scripts on the Prefect worker's own machine (target: localhost)."

    provider_name: ClassVar[str] = LocalProvider.name

    def build_provider(self) -> LocalProvider:
        """The local provider."""
        return LocalProvider()


register_provider(LocalProviderBlock.provider_name, LocalProvider, LocalProviderBlock)
