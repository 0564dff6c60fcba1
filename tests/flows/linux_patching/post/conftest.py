"""The post flow tests' fixture: the emulated AWS provider (see ``servers.py``)."""

from tests.flows.linux_patching.post.servers import emulated_provider  # noqa: F401 (fixture)
