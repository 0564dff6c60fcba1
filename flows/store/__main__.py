"""``python -m flows.store upgrade``: bring the record store's schema up to date.

Flows do this themselves on first use; the command is for upgrading ahead of time (say,
before deploying a new version) and for checking where a database stands (``current``).
"""

from __future__ import annotations

import argparse
import sys

from flows.common.settings import get_settings
from flows.store.database import (
    StoreError,
    create_store_engine,
    current_revision,
    describe_url,
    head_revision,
    upgrade,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.store", description="Manage the CloudOps flows record store."
    )
    parser.add_argument(
        "command",
        choices=["upgrade", "current"],
        help="upgrade: migrate to the newest schema, keeping records; current: show revision",
    )
    parser.add_argument("--url", help="database URL (default: DATABASE_URL or the SQLite file)")
    args = parser.parse_args(argv)
    url = args.url or get_settings().database_url
    try:
        engine = create_store_engine(url)
        try:
            if args.command == "upgrade":
                upgrade(engine)
            revision = current_revision(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{describe_url(url)}: schema revision {revision or 'none'} (newest: {head_revision()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
