"""Run the platform benchmarks: `uv run python -m bench.run [--quick] [names...]`.

Starts its own embedded PostgreSQL, NATS JetStream and Redis in a temp dir (free
ports, never the machine's own services), runs the chosen benchmarks in order and
writes `bench/results/<name>.md` for each. Target misses are reported, never fatal:
the exit code is non-zero only if a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

# Kept light at import time: the migration runner's spawned worker processes re-import
# this main module, and its import cost would otherwise land in the measured figures.
Bench = Callable[[Any, bool], Awaitable[Any]]


def _load(name: str) -> Bench:
    """Import a benchmark module only when it runs (each pulls in different services)."""
    import importlib

    return importlib.import_module(f"bench.{name}").run  # type: ignore[no-any-return]


NAMES = (
    "provisioning",
    "migrations",
    "events",
    "gateway",
    "signup",
    "contacts_import",
    "contacts_search",
)


async def _main(names: list[str], quick: bool, keep: bool) -> int:
    from bench import common

    failures = 0
    with common.running_stack(keep=keep) as stack:
        common.log(f"servers up in {stack.root}: pg {stack.pg.url}, nats {stack.nats.url}")
        for name in names:
            common.log(f"=== {name}{' (quick)' if quick else ''}")
            try:
                result = await _load(name)(stack, quick)
            except Exception:
                failures += 1
                common.log(f"{name} could not run:\n{traceback.format_exc()}")
                continue
            path = result.write()
            common.log(f"{name} done in {result.seconds:.1f} s -> {path}")
            for t in result.targets:
                common.log(f"  {t.verdict:4} {t.name}: {t.value} (target {t.target})")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(NAMES)})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="reduced sizes for development (results are marked QUICK)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the servers' temp dir (for debugging)"
    )
    args = parser.parse_args(argv)
    names = args.names or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    return asyncio.run(_main(names, args.quick, args.keep))


if __name__ == "__main__":
    sys.exit(main())
