"""Shared plumbing of the benchmarks: servers, settings, statistics, result files.

Benchmarks report ratios and distributions measured in one run; a miss is
reported (PASS/MISS) but never turns into a failing exit code.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from crm_dev.devstack import EmbeddedNats, EmbeddedPostgres, EmbeddedRedis
from crm_lib.registry import load_service
from crm_lib.settings import SERVICE_NAMES, PlatformSettings
from crm_lib.telemetry import setup_logging

RESULTS_DIR = Path(__file__).parent / "results"

# PostgreSQL durability mode for the benchmark cluster. fast=False keeps fsync and
# synchronous_commit on, as a real deployment would; every result file says which one ran.
PG_FAST = False


@dataclass
class Stack:
    """The embedded servers one benchmark run uses (temp dir, free ports)."""

    root: Path
    pg: EmbeddedPostgres
    nats: EmbeddedNats
    redis: EmbeddedRedis

    def nats_env(self) -> dict[str, str]:
        """NATS credentials for the platform processes a benchmark starts (the throwaway
        stack's admin: per-service users are `make run`'s and the tests' concern)."""
        return {
            "CRM_NATS_USER": self.nats.admin_user,
            "CRM_NATS_PASSWORD": self.nats.admin_password,
        }

    def settings(self, service: str = "platform", **overrides: Any) -> PlatformSettings:
        """Settings for `service` pointing at this stack (keyword overrides win)."""
        values: dict[str, Any] = {
            "service_name": service,
            "database_url": self.pg.url,
            "nats_url": self.nats.url,
            # The throwaway stack's admin NATS user (services' own users: make run, tests).
            "nats_user": self.nats.admin_user,
            "nats_password": self.nats.admin_password,
            "redis_url": self.redis.url,
            "log_json": True,
            "log_level": "WARNING",
        }
        values.update(overrides)
        cls = PlatformSettings
        if service in SERVICE_NAMES:
            cls = load_service(service).settings_class or PlatformSettings
        return cls(**values)


@contextlib.contextmanager
def running_stack(keep: bool = False) -> Iterator[Stack]:
    root = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    try:
        with (
            EmbeddedPostgres(root / "pg", fast=PG_FAST) as pg,
            EmbeddedNats(root / "nats") as nats,
            EmbeddedRedis(root / "redis") as redis,
        ):
            stack = Stack(root, pg, nats, redis)
            setup_logging(stack.settings("bench"))
            yield stack
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank-interpolated percentile (p in 0..100) of a non-empty sequence."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: Sequence[float], scale: float = 1.0, unit: str = "") -> str:
    """`n, min, p50, p95, p99, max, mean` of `values` (multiplied by `scale`)."""
    if not values:
        return "n=0"
    v = [x * scale for x in values]
    return (
        f"n={len(v)}, min={min(v):.1f}{unit}, p50={percentile(v, 50):.1f}{unit}, "
        f"p95={percentile(v, 95):.1f}{unit}, p99={percentile(v, 99):.1f}{unit}, "
        f"max={max(v):.1f}{unit}, mean={statistics.fmean(v):.1f}{unit}"
    )


def _pg_cpu_seconds(pg: EmbeddedPostgres) -> float:
    """CPU seconds used so far by this cluster's processes (live ones + reaped backends)."""
    binary = (pg.bin_dir / "postgres").resolve()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "exe")).resolve() != binary:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        # utime, stime; the postmaster also carries its reaped children's cutime, cstime.
        total += int(fields[11]) + int(fields[12])
        try:
            parent_is_pg = Path(os.readlink(f"/proc/{ppid}/exe")).resolve() == binary
        except OSError:
            parent_is_pg = False
        if parent_is_pg:
            continue  # a backend: its own times only
        total += int(fields[13]) + int(fields[14])
    return total / tick


class CpuMeter:
    """CPU used by this Python process and by the PostgreSQL cluster over a phase."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started = time.perf_counter()
        self.self0 = self._own()
        self.pg0 = _pg_cpu_seconds(stack.pg)

    @staticmethod
    def _own() -> float:
        """This process plus its reaped children (the migration runner's worker processes)."""
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def report(self) -> str:
        wall = time.perf_counter() - self.started
        me = self._own() - self.self0
        pg = _pg_cpu_seconds(self.stack.pg) - self.pg0
        return (
            f"CPU over {wall:.1f} s wall: Python (this process + reaped workers) {me:.1f} s "
            f"({me / wall * 100:.0f}% of one core), PostgreSQL {pg:.1f} s "
            f"({pg / wall * 100:.0f}% of one core); machine load average now "
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        )


class StatementCounter:
    """Counts SQL statements sent by every engine in this process while active."""

    def __init__(self) -> None:
        self.count = 0

    def _on(self, *_args: Any) -> None:
        self.count += 1

    @contextlib.contextmanager
    def counting(self) -> Any:
        self.count = 0
        event.listen(Engine, "before_cursor_execute", self._on)
        try:
            yield self
        finally:
            event.remove(Engine, "before_cursor_execute", self._on)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


# ----------------------------------------------------------------------------- result files


def machine_note() -> str:
    cpus = os.cpu_count()
    affinity: int | None = cpus
    with contextlib.suppress(AttributeError):
        affinity = len(os.sched_getaffinity(0))
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    load = ""
    with contextlib.suppress(OSError):
        load = f", load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    return (
        f"nproc={affinity} (os.cpu_count={cpus}){mem}; Python {platform.python_version()} "
        f"({sys.implementation.name}) on {platform.system()} {platform.release()} "
        f"{platform.machine()}{load}. Machine shared with other work: absolute numbers are noisy, "
        f"ratios taken in the same run are the meaningful ones."
    )


def code_note() -> str:
    """Which code was measured: git HEAD and whether the work tree had local changes."""
    import subprocess

    root = Path(__file__).parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    outside = [line for line in dirty if not line[3:].startswith("bench/")]
    return f"git {head}" + (
        f" plus uncommitted changes in {len(outside)} tracked file(s) outside bench/"
        if outside
        else ""
    )


@dataclass
class Target:
    name: str
    value: str
    target: str
    ok: bool | None  # None: not judged (informational)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.ok]


@dataclass
class Result:
    name: str
    title: str
    quick: bool
    method: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    machine: str = field(default_factory=machine_note)
    code: str = field(default_factory=code_note)
    seconds: float = 0.0

    def render(self) -> str:
        lines = [
            f"# Benchmark: {self.title}",
            "",
            f"- date: {self.started.strftime('%Y-%m-%d %H:%M:%S')} UTC",
            f"- mode: {'QUICK (reduced sizes, development only)' if self.quick else 'full'}",
            f"- machine: {self.machine}",
            f"- code: {self.code}",
            f"- servers: embedded PostgreSQL (fast={PG_FAST}: "
            f"{'fsync off' if PG_FAST else 'fsync and synchronous_commit on'}), "
            "NATS JetStream (file storage), Redis; all on 127.0.0.1 in a temp dir, "
            "started by the benchmark itself",
            f"- wall time of this benchmark: {self.seconds:.1f} s",
            "- command: `uv run python -m bench.run"
            f"{' --quick' if self.quick else ''} {self.name}`",
            "",
            "## Result vs target",
            "",
            "| measure | value | target | verdict |",
            "|---|---|---|---|",
            *(f"| {t.name} | {t.value} | {t.target} | {t.verdict} |" for t in self.targets),
            "",
            "Verdicts are informational: a MISS never fails the run.",
            "",
            "## Method",
            "",
            *(f"- {m}" for m in self.method),
            "",
            "## Raw numbers",
            "",
            "```",
            *self.raw,
            "```",
        ]
        if self.notes:
            lines += ["", "## Observations", "", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.md"
        path.write_text(self.render())
        return path


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
