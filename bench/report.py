#!/usr/bin/env python3
"""Renders OUT/report.md from one run of bench/run.sh: S1-S3 for jobqueue and the
peers (OUT/results/*.json, the shared harness's format), then S4-S6 (OUT/s4.json...).

    python bench/report.py OUT
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _sh(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True, check=False).stdout.strip()


def _n(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _spread(d: dict[str, float]) -> str:
    return f"{_n(d['median'])} ({_n(d['min'])}–{_n(d['max'])})"


def peers_table(results: Path) -> tuple[list[str], list[dict[str, Any]]]:
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]
    rows.sort(key=lambda d: (d["peer"] != "jobqueue", d["peer"], d["variant"]))
    out = [
        "| peer | variant | version | conc. | S1 enqueue jobs/s | S1 drain jobs/s | S2 p50 / p99 ms | S3 lateness p50 / p99 / max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in rows:
        s1, s2, s3 = d.get("s1"), d.get("s2") or {}, d.get("s3") or {}
        enqueue = _spread(s1["enqueue_jobs_per_s"]) if s1 else "—"
        drain = _spread(s1["drain_jobs_per_s"]) if s1 else "—"
        latency = f"{_n(s2.get('p50_ms'), 1)} / {_n(s2.get('p99_ms'), 1)}" if "p50_ms" in s2 else "—"
        if s3.get("skipped"):
            late = "n/a"
        elif "p50_ms" in s3:
            late = f"{_n(s3['p50_ms'], 1)} / {_n(s3['p99_ms'], 1)} / {_n(s3['max_ms'], 1)}"
        else:
            late = "—"
        conc = d.get("settings", {}).get("concurrency", "?")
        out.append(
            f"| {d['peer']} | {d['variant']} | {d['version']} | {conc} | {enqueue} | {drain} | {latency} | {late} |"
        )
    return out, rows


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """jobqueue against the best peer of the same run (the raw floor is not a peer)."""
    ours = [d for d in rows if d["peer"] == "jobqueue" and d.get("s1")]
    peers = [d for d in rows if d["peer"] not in ("jobqueue", "raw-redis-py") and d.get("s1")]
    if not ours or not peers:
        return []
    out = ["", "Ratios against the best peer of this run (higher is better for rates, lower for times):", ""]
    best_drain = max(peers, key=lambda d: d["s1"]["drain_jobs_per_s"]["median"])
    best_enqueue = max(peers, key=lambda d: d["s1"]["enqueue_jobs_per_s"]["median"])
    for d in ours:
        drain = d["s1"]["drain_jobs_per_s"]["median"] / best_drain["s1"]["drain_jobs_per_s"]["median"]
        enqueue = d["s1"]["enqueue_jobs_per_s"]["median"] / best_enqueue["s1"]["enqueue_jobs_per_s"]["median"]
        out.append(
            f"- jobqueue {d['variant']}: drain {drain:.1f}x {best_drain['peer']}/{best_drain['variant']}, "
            f"enqueue {enqueue:.1f}x {best_enqueue['peer']}/{best_enqueue['variant']}"
        )
    for key, label in (("s2", "S2 p99"), ("s3", "S3 p99")):
        timed = [d for d in peers if "p99_ms" in (d.get(key) or {})]
        if timed:
            best = min(timed, key=lambda d: d[key]["p99_ms"])
            for d in ours:
                if "p99_ms" in (d.get(key) or {}):
                    out.append(
                        f"- jobqueue {d['variant']} {label}: {d[key]['p99_ms']:.1f} ms, best peer "
                        f"{best['peer']}/{best['variant']} {best[key]['p99_ms']:.1f} ms"
                    )
    return out


def _range(row: dict[str, Any]) -> str:
    return f" ({_n(row['min'])}–{_n(row['max'])})" if "min" in row else ""


def api_table(s4: dict[str, Any]) -> list[str]:
    if "rows" not in s4:
        return [f"S4 skipped: {s4.get('skipped')}"]
    out = [
        "| server | RPC | protocol | requests/s (median, min–max) | jobs/s | p50 / p99 ms | trivial handler req/s | of ceiling |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s4["rows"]:
        ok = (
            ""
            if r["jobs_stored"] == r["jobs_expected"]
            else f" ⚠ stored {r['jobs_stored']}/{r['jobs_expected']}"
        )
        share = "—" if r["of_ceiling"] is None else f"{r['of_ceiling']:.0%}"
        out.append(
            f"| {r['server']} | {r['rpc']} | {r['protocol']} | {_n(r['req_per_s'])}{_range(r)} | {_n(r['jobs_per_s'])}{ok} | "
            f"{_n(r['p50_ms'], 1)} / {_n(r['p99_ms'], 1)} | {_n(r['ceiling_req_per_s'])} | {share} |"
        )
    return out


def cluster_drain_table(data: dict) -> list[str]:
    """S5 on a cluster: the drain's rate, then each master's share of the Redis CPU."""
    lines = [
        f"{_n(data['jobs'])} jobs of one type, `jobqueue worker --processes {data['processes']}`: "
        f"{_n(data['drain_jobs_per_s'])} jobs/s (median of {data['runs']}, "
        f"{_n(data['min'])}–{_n(data['max'])}); Redis CPU {data['redis_cpu_us_per_job']} µs per job "
        "over all masters.",
        "",
        "| master | Redis CPU µs per job (median, min–max) | share | costliest commands (µs per job) |",
        "|---|---|---|---|",
    ]
    for m in data["masters"]:
        # Subcommands are named `script|load`: escaped, as `|` ends a table cell.
        top = ", ".join(f"{c['command']} {c['us_per_job']}".replace("|", "\\|") for c in m["top_commands"])
        lines.append(
            f"| {m['master']} | {m['redis_cpu_us_per_job']} ({m['min']}–{m['max']}) | {m['share']:.0%} | {top} |"
        )
    return lines


def main() -> int:
    out_dir = Path(sys.argv[1])
    lines = ["# jobqueue benchmark", ""]
    lines.append(f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    cpu = _sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
    lines.append(f"- machine: nproc={os.cpu_count()}, {cpu}")
    lines.append(f"- {_sh('redis-server --version')}; Python {platform.python_version()}")
    lines.append(
        "- Redis, workers and drivers share the machine: numbers are relative, compare within this run."
    )
    lines += ["", "## S1-S3: jobqueue and the peers (shared harness, same run)", ""]
    table, rows = peers_table(out_dir / "results")
    lines += table + ratios(rows)
    for name, title in (
        ("s4", "S4: the API"),
        ("s5", "S5: scaling"),
        ("s5-cluster", "S5 on a Redis Cluster"),
        ("s6", "S6: memory"),
    ):
        path = out_dir / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        lines += ["", f"## {title}", ""]
        if name == "s4":
            lines += api_table(data)
        elif name == "s5":
            lines += [
                "| worker processes | drain jobs/s (median, min–max) | Redis CPU µs per job |",
                "|---|---|---|",
            ]
            lines += [
                f"| {r['workers']} | {_n(r['drain_jobs_per_s'])} ({_n(r['min'])}–{_n(r['max'])}) | {r['redis_cpu_us_per_job']} |"
                for r in data["rows"]
            ]
        elif name == "s5-cluster":
            lines += cluster_drain_table(data)
        else:
            lines.append(f"- Redis bytes per pending job: {_n(data['redis_bytes_per_pending_job'])}")
            lines.append(
                f"- Redis bytes per finished job (kept for the retention): {_n(data['redis_bytes_per_finished_job'])}"
            )
            rss = ", ".join(f"{k} jobs: {v} MB" for k, v in data["worker_rss_mb_after_jobs"].items())
            lines.append(f"- worker RSS after {rss}")
    report = "\n".join(lines) + "\n"
    (out_dir / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
