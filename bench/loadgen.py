"""HTTP load generation for the benchmarks: `wrk` when available, else an aiohttp closed loop.

Either way the generator runs in its **own process** (never in the benchmark's event loop
or in a server's process) with a fixed number of keep-alive connections, each sending the
next request as soon as the previous answer is read (closed loop), for a fixed duration.

- `wrk` (Debian package `wrk`, C, one thread): far cheaper per request than any Python
  client, so it is the preferred generator. If it is missing, `ensure_wrk` tries
  `apt-get install -y wrk` once (root only; skipped with `CRM_BENCH_NO_INSTALL=1`).
  Latency percentiles come from wrk's own histogram via a `done()` Lua hook.
- fallback: `python -m bench.loadgen URL ...` (this module's `main`), aiohttp with uvloop,
  `connections` coroutines on one session whose connector holds exactly that many
  connections. Costs more CPU per request than wrk (reported in the result files).

`CRM_BENCH_LOADGEN=aiohttp` forces the fallback (e.g. to compare the two).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# wrk's done() hook: one JSON line with the totals and latency percentiles (microseconds).
_WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.mean, latency.max))
end
"""


@dataclass
class LoadResult:
    """One load run: throughput, latency percentiles (ms), errors, generator CPU."""

    tool: str
    url: str
    connections: int
    duration_s: float
    requests: int
    errors: int  # non-2xx/3xx answers + socket errors + timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    loadgen_cpu_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def line(self) -> str:
        return (
            f"{self.rps:8.0f} req/s  p50 {self.p50_ms:7.2f} ms  p90 {self.p90_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  max {self.max_ms:7.1f} ms  "
            f"({self.requests} requests in {self.duration_s:.1f} s, {self.errors} errors, "
            f"{self.tool} CPU {self.loadgen_cpu_s:.1f} s)"
        )


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


_wrk_checked: str | bool | None = False  # False: not looked yet; None: unavailable


def ensure_wrk(log: Any = None) -> str | None:
    """Path of `wrk`, installing the Debian package once if allowed; None to fall back."""
    global _wrk_checked
    if os.environ.get("CRM_BENCH_LOADGEN", "").lower() == "aiohttp":
        return None
    if _wrk_checked is not False:
        return _wrk_checked  # type: ignore[return-value]
    found = shutil.which("wrk")
    if found is None and _may_install():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "wrk"]
        # Install; if the package lists are missing or stale, refresh them once and retry.
        for steps in ([install], [["apt-get", "update", "-q"], install]):
            for step in steps:
                if log:
                    log(f"wrk missing: {' '.join(step)}")
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(  # noqa: S603 - fixed argv
                        step, env=env, capture_output=True, timeout=300, check=False
                    )
            found = shutil.which("wrk")
            if found:
                break
    _wrk_checked = found
    if found is None and log:
        log("wrk unavailable: falling back to the aiohttp load generator")
    return found


def _may_install() -> bool:
    if os.environ.get("CRM_BENCH_NO_INSTALL"):
        return False
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


async def run_load(
    url: str,
    *,
    connections: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    wrk: str | None = None,
) -> LoadResult:
    """One closed-loop run against `url` from a separate process."""
    headers = headers or {}
    if wrk:
        return await _run_wrk(wrk, url, connections, duration_s, headers)
    return await _run_aiohttp(url, connections, duration_s, headers)


async def _run_wrk(
    wrk: str, url: str, connections: int, duration_s: float, headers: dict[str, str]
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_LUA)
        script = f.name
    try:
        argv = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            script,
        ]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        argv.append(url)
        cpu0 = _children_cpu()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        cpu = _children_cpu() - cpu0
    finally:
        os.unlink(script)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        stderr = err.decode(errors="replace")
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text}\n{stderr}")
    d = json.loads(line[len("WRKJSON ") :])
    errors = (
        d["connect_errors"]
        + d["read_errors"]
        + d["write_errors"]
        + d["status_errors"]
        + d["timeouts"]
    )
    return LoadResult(
        tool="wrk",
        url=url,
        connections=connections,
        duration_s=d["duration_us"] / 1e6,
        requests=d["requests"],
        errors=errors,
        p50_ms=d["p50_us"] / 1000,
        p90_ms=d["p90_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        max_ms=d["max_us"] / 1000,
        mean_ms=d["mean_us"] / 1000,
        loadgen_cpu_s=cpu,
        detail=d,
    )


async def _run_aiohttp(
    url: str, connections: int, duration_s: float, headers: dict[str, str]
) -> LoadResult:
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        url,
        "--connections",
        str(connections),
        "--duration",
        str(duration_s),
    ]
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    cpu0 = _children_cpu()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).parent.parent),
    )
    out, err = await proc.communicate()
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode(errors='replace')}")
    d = json.loads(out.decode().strip().splitlines()[-1])
    return LoadResult(
        tool="aiohttp",
        url=url,
        connections=connections,
        duration_s=d["duration_s"],
        requests=d["requests"],
        errors=d["errors"],
        p50_ms=d["p50_ms"],
        p90_ms=d["p90_ms"],
        p99_ms=d["p99_ms"],
        max_ms=d["max_ms"],
        mean_ms=d["mean_ms"],
        loadgen_cpu_s=cpu,
        detail={"statuses": d["statuses"]},
    )


# ----------------------------------------------------------------------------- fallback process


async def _closed_loop(
    url: str, connections: int, duration_s: float, headers: dict[str, str]
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, skip_auto_headers=("User-Agent",)
    ) as session:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            nonlocal errors
            perf = time.perf_counter
            while True:
                t0 = perf()
                if t0 >= deadline:
                    return
                try:
                    async with session.get(url) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                latencies.append(perf() - t0)
                key = str(status)
                statuses[key] = statuses.get(key, 0) + 1
                if status >= 400:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1000

    return {
        "requests": len(latencies),
        "duration_s": elapsed,
        "errors": errors,
        "statuses": statuses,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "mean_ms": sum(latencies) / len(latencies) * 1000 if latencies else float("nan"),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    result = asyncio.run(_closed_loop(args.url, args.connections, args.duration, headers))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
