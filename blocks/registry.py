"""The provider registry: turns what a flow is given into a ready ``Provider``.

A flow's ``provider`` parameter may be:

* a block document slug, ``aws-provider/prod-gov``: that saved block;
* a bare block name, ``prod-gov``: the saved block of that name, searched among the block
  types of every registered provider (an error if two types have a block of that name);
* a short provider name, ``aws`` or ``local``: see below;
* a ``ProviderBlock`` (built) or a ``Provider`` (returned as it is);
* nothing (None or empty): the ``DEFAULT_PROVIDER`` setting (default ``aws``), resolved as above.

A short name builds the provider with its factory, except for providers registered with
``prefer_saved_block`` (``aws``): when exactly one block of their type is saved, that block is
used, since it is plainly the one configured for this workspace; with none saved the factory
runs (for ``aws``: credentials from the legacy ``AWS_*_COM``/``_GOV`` variables, a profile
or boto3's default chain); with several saved the name is ambiguous and the error lists them.

A new provider registers itself without any flow changing::

    register_provider("ssh", SshProvider, block_type=SshProviderBlock)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from blocks.base import ProviderBlock
from providers.base import Provider, ProviderError

ProviderFactory = Callable[[], Provider]


class ProviderSettings(BaseSettings):
    """Which provider a flow uses when it is given none."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    default_provider: str = Field(
        default="aws",
        min_length=1,
        description="a short provider name, block slug or block name (env DEFAULT_PROVIDER)",
    )


class ProviderNotFoundError(ProviderError, ValueError):
    """A provider spec matched nothing (or more than one thing); the message lists options."""


class ProviderBlockInvalidError(ProviderError, ValueError):
    """A saved provider block does not hold valid settings (the Prefect UI saves a form without
    running its checks); the message names the block and each field, never a value."""


def _invalid_block(type_slug: str, name: str, error: ValidationError) -> ProviderBlockInvalidError:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'the block'}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False)
    )
    return ProviderBlockInvalidError(
        f"the {type_slug} block {name!r} is not valid: {problems}. Edit it in the Prefect UI "
        f"(Blocks > {name}) or save it again from Python; nothing was sent"
    )


@dataclass(frozen=True)
class ProviderRegistration:
    """How one short provider name is built, and the block type that configures it."""

    name: str
    factory: ProviderFactory
    block_type: type[ProviderBlock] | None = None
    prefer_saved_block: bool = False


_registrations: dict[str, ProviderRegistration] = {}
_registrations_lock = threading.Lock()


def register_provider(
    name: str,
    factory: ProviderFactory,
    block_type: type[ProviderBlock] | None = None,
    *,
    prefer_saved_block: bool = False,
) -> None:
    """Make ``name`` resolvable by ``load_provider``.

    Args:
        name: the short name flows use (``aws``, ``local``, ``ssh``).
        factory: builds the provider when the short name is given and no block is used.
        block_type: the block type whose saved documents build this provider, so that its
            block slugs and bare block names resolve.
        prefer_saved_block: use the single saved block of ``block_type`` for the short name.
    """
    if not name or "/" in name:
        raise ValueError(f"provider name {name!r} must be non-empty and contain no '/'")
    with _registrations_lock:
        _registrations[name] = ProviderRegistration(name, factory, block_type, prefer_saved_block)


def registered_providers() -> dict[str, ProviderRegistration]:
    """Every registered short name and how it is built."""
    with _registrations_lock:
        return dict(_registrations)


def _block_types() -> dict[str, type[ProviderBlock]]:
    """Registered provider block classes by block type slug."""
    return {
        r.block_type.get_block_type_slug(): r.block_type
        for r in registered_providers().values()
        if r.block_type is not None
    }


def saved_block_slugs(block_type: type[ProviderBlock] | None = None) -> list[str]:
    """Slugs (``aws-provider/prod-gov``) of the saved blocks of ``block_type`` (default: of
    every registered provider block type), from the Prefect API."""
    types = [block_type] if block_type is not None else list(_block_types().values())
    slugs: list[str] = []
    with get_client(sync_client=True) as client:
        for cls in types:
            type_slug = cls.get_block_type_slug()
            try:
                documents = client.read_block_documents_by_type(type_slug, include_secrets=False)
            except PrefectHTTPStatusError as exc:
                if exc.response.status_code == 404:
                    continue  # the type was never registered on this server: nothing is saved
                raise
            slugs.extend(
                f"{type_slug}/{d.name}" for d in documents if d.name and not d.is_anonymous
            )
    return sorted(slugs)


def _load_block(block_class: type[ProviderBlock], name: str) -> ProviderBlock | None:
    """The saved block ``name`` of ``block_class``, or None when there is none."""
    try:
        # _sync=True: this registry is called from sync flow code, even under an event loop.
        # Prefect's dispatcher takes it without declaring it, hence the ignore.
        loaded = block_class.load(name, _sync=True)  # type: ignore[call-arg]
    except ValueError as exc:
        # Prefect reports a missing block document as a ValueError raised from ObjectNotFound.
        if isinstance(exc.__cause__, ObjectNotFound):
            return None
        raise
    except RuntimeError as exc:
        # A document that fails the block's checks (saved from the UI, which does not run
        # them): Prefect's own message suggests validate=False; ours says which field.
        if isinstance(exc.__cause__, ValidationError):
            raise _invalid_block(block_class.get_block_type_slug(), name, exc.__cause__) from None
        raise
    if not isinstance(loaded, ProviderBlock):
        # load() hands back a coroutine when it dispatches to its async twin.
        raise TypeError(f"loading block {name!r} gave {type(loaded).__name__}, not a block")
    return loaded


def _not_found(reason: str) -> ProviderNotFoundError:
    names = ", ".join(sorted(registered_providers()))
    saved = ", ".join(saved_block_slugs()) or "none"
    return ProviderNotFoundError(
        f"{reason}. Available providers: {names}; saved provider blocks: {saved}. Pass one of "
        "these, or save a provider block (after `prefect block register -m blocks`)"
    )


def _from_slug(spec: str) -> Provider:
    type_slug, _, block_name = spec.partition("/")
    block_class = _block_types().get(type_slug)
    if block_class is None:
        raise _not_found(f"{type_slug!r} (in {spec!r}) is not a provider block type")
    block = _load_block(block_class, block_name)
    if block is None:
        raise _not_found(f"no {type_slug} block named {block_name!r} is saved")
    return block.build_provider()


def _from_short_name(registration: ProviderRegistration) -> Provider:
    if registration.prefer_saved_block and registration.block_type is not None:
        slugs = saved_block_slugs(registration.block_type)
        if len(slugs) == 1:
            return _from_slug(slugs[0])
        if len(slugs) > 1:
            raise ProviderNotFoundError(
                f"provider {registration.name!r} is ambiguous: {len(slugs)} blocks of its type "
                f"are saved ({', '.join(slugs)}). Name one of them, or set DEFAULT_PROVIDER to "
                "its slug"
            )
    return registration.factory()


def _from_block_name(name: str) -> Provider:
    found = [
        block
        for block_class in _block_types().values()
        if (block := _load_block(block_class, name)) is not None
    ]
    if len(found) > 1:
        slugs = ", ".join(f"{b.get_block_type_slug()}/{name}" for b in found)
        raise ProviderNotFoundError(
            f"block name {name!r} is ambiguous: it is saved as {slugs}. Pass the full slug"
        )
    if not found:
        raise _not_found(f"{name!r} is neither a provider name nor a saved provider block")
    return found[0].build_provider()


def load_provider(spec: str | Provider | ProviderBlock | None = None) -> Provider:
    """The provider that ``spec`` names (see the module docstring for the rules).

    Raises:
        ProviderNotFoundError: ``spec`` names nothing registered or saved; the message lists
            the short names and saved block slugs there are.
    """
    if isinstance(spec, Provider):
        return spec
    if isinstance(spec, ProviderBlock):
        return spec.build_provider()
    if spec is None or not spec.strip():
        spec = ProviderSettings().default_provider
    spec = spec.strip()
    if "/" in spec:
        return _from_slug(spec)
    registration = registered_providers().get(spec)
    if registration is not None:
        return _from_short_name(registration)
    return _from_block_name(spec)
