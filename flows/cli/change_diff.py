"""What one saved version of a change's instance list changed from the version before it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flows.store import ChangeVersionRecord
from providers.base import Target


class Moved(BaseModel):
    """An instance whose account or region differs between the two versions."""

    before: Target
    after: Target


class Altered(BaseModel):
    """An instance in the same place whose platform or name differs."""

    before: Target
    after: Target
    fields: list[str]


class ChangeDiff(BaseModel):
    """Version ``new`` against version ``old`` (``old`` None: ``new`` is the first)."""

    change_number: str
    old: ChangeVersionRecord | None
    new: ChangeVersionRecord
    added: list[Target] = Field(default_factory=list)
    removed: list[Target] = Field(default_factory=list)
    moved: list[Moved] = Field(default_factory=list)
    altered: list[Altered] = Field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.moved or self.altered)


def diff_versions(old: ChangeVersionRecord | None, new: ChangeVersionRecord) -> ChangeDiff:
    """Instances added, removed, moved between accounts or regions, or otherwise altered."""
    before = {t.instance_id: t for t in old.targets} if old else {}
    after = {t.instance_id: t for t in new.targets}
    diff = ChangeDiff(change_number=new.change_number, old=old, new=new)
    if old is None:
        return diff
    diff.added = [t for t in new.targets if t.instance_id not in before]
    diff.removed = [t for t in old.targets if t.instance_id not in after]
    for target in new.targets:
        previous = before.get(target.instance_id)
        if previous is None:
            continue
        if (previous.account_id, previous.region) != (target.account_id, target.region):
            diff.moved.append(Moved(before=previous, after=target))
            continue
        fields = [f for f in ("platform", "name") if getattr(previous, f) != getattr(target, f)]
        if fields:
            diff.altered.append(Altered(before=previous, after=target, fields=fields))
    return diff
