"""Turning results into the ratio table (stdout), JSON, bench/RESULTS.md and an optional plot."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import ssl
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ._harness import ROOT, Case, Env, Ratio, Result, fmt_rate, fmt_value


def implementation() -> str:
    """Which sockstream core the run measures: the compiled twin or pure Python."""
    try:
        import sockstream
    except ImportError:
        return "not importable"
    if getattr(sockstream, "ACCELERATED", False):
        return "accelerated (the C extension sockstream._speedups)"
    if os.environ.get("SOCKSTREAM_PUREPYTHON", "") not in ("", "0"):
        return "pure Python (SOCKSTREAM_PUREPYTHON set)"
    return "pure Python (the C extension is not built)"


def machine_facts() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    versions: dict[str, str] = {}
    for dist in ("sockstream", "anyio", "trio", "trustme", "matplotlib"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if commit and dirty:
            commit += " (with uncommitted changes in src/)"
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "platform": platform.platform(),
        "libraries": versions,
        "git_commit": commit,
        "implementation": implementation(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def compute_ratios(results: list[Result], ratios: list[Ratio]) -> list[dict[str, Any]]:
    by_id = {r.case.id: r for r in results}
    rows = []
    for ratio in ratios:
        ss, anchor = by_id.get(ratio.sockstream), by_id.get(ratio.anchor)
        value = None
        why = ""
        if ss is None or anchor is None:
            why = "not run"
        elif ss.median is None or anchor.median is None:
            missing = ss if ss.median is None else anchor
            why = missing.skipped or missing.error or "no value"
        else:
            # per unit of work, so cases of different sizes compare (W7's scaling row)
            ss_cost = ss.median / ss.case.units
            anchor_cost = anchor.median / anchor.case.units
            value = anchor_cost / ss_cost if ss_cost > 0 else None
        mark = ""
        if ratio.goal is not None:
            mark = "n/a" if value is None else ("pass" if value >= ratio.goal else "MISS")
        rows.append(
            {
                "workload": ratio.sockstream.split(".", 1)[0],
                "label": ratio.label,
                "sockstream": ratio.sockstream,
                "anchor": ratio.anchor,
                "ratio": value,
                "goal": ratio.goal,
                "mark": mark,
                "note": ratio.note,
                "why": why,
            }
        )
    return rows


def _fmt_ratio(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def _fmt_goal(g: float | None) -> str:
    return "" if g is None else f">= {g:.2g}"


def text_tables(results: list[Result], rows: list[dict[str, Any]]) -> str:
    """The plain-text report printed on stdout: cases, then the ratio table."""
    out = ["", "Cases (median of repeats)"]
    w = max([len(r.case.label) for r in results] + [10]) + 6
    for r in results:
        name = f"{r.workload} {r.case.label}"
        if r.median is None:
            why = f"skipped: {r.skipped}" if r.skipped else f"ERROR {r.error}"
            out.append(f"  {name:<{w}} {why[:100]}")
            continue
        rate = fmt_rate(r.case, r.median)
        out.append(f"  {name:<{w}} {fmt_value(r.case, r.median):>16}  {rate}")
    out += ["", "Ratio table (sockstream speed / anchor speed; > 1: sockstream faster)"]
    lw = max([len(row["label"]) for row in rows] + [10]) + 4
    out.append(f"  {'row':<{lw}} {'ratio':>7}  {'goal':<8} mark")
    for row in rows:
        ratio = _fmt_ratio(row["ratio"])
        extra = f"  ({row['why'][:60]})" if row["why"] else ""
        out.append(
            f"  {row['workload'] + ' ' + row['label']:<{lw}} {ratio:>7}  "
            f"{_fmt_goal(row['goal']):<8} {row['mark']}{extra}"
        )
    return "\n".join(out) + "\n"


def to_json(
    env: Env,
    facts: dict[str, Any],
    results: list[Result],
    rows: list[dict[str, Any]],
    sizes: dict[str, str],
) -> dict[str, Any]:
    cases = {}
    for r in results:
        c: Case = r.case
        cases[c.id] = {
            "workload": r.workload,
            "label": c.label,
            "side": c.side,
            "kind": c.kind,
            "units": c.units,
            "unit": c.unit,
            "values": r.values,
            "median": r.median,
            "min": min(r.values) if r.values else None,
            "max": max(r.values) if r.values else None,
            "skipped": r.skipped,
            "error": r.error,
        }
    return {
        "machine": facts,
        "config": {"mode": env.mode, "repeat": env.repeat, "sizes": sizes, "argv": sys.argv[1:]},
        "cases": cases,
        "ratios": rows,
    }


def markdown(data: dict[str, Any], titles: dict[str, str], notes: list[str]) -> str:
    m = data["machine"]
    cfg = data["config"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    lines = [
        "# sockstream benchmark results",
        "",
        "Written by `python -m bench` (see `docs/bench.md`); do not edit by hand.",
        "",
        "## Machine",
        f"- CPU: {m['cpu']} ({m['cores']} cores, {m['usable_cores']} usable)",
        f"- {m['python']}, {m['openssl']}",
        f"- {m['platform']}",
        f"- Libraries: {libs}",
        f"- sockstream implementation: {m.get('implementation', 'pure Python')}",
        f"- Date: {m['date']}; commit {m['git_commit'] or 'unknown'}; load average at the end "
        f"{m.get('load_average', '?')} (other work on the machine blurs the numbers)",
        f"- Run: mode `{cfg['mode']}`, median of {cfg['repeat']} repeats; "
        f"arguments `{' '.join(cfg['argv']) or '(none)'}`",
        "",
        "## Ratios (sockstream / anchor, same run)",
        "",
        "Speed ratio = anchor time / sockstream time (for memory: anchor bytes / sockstream "
        "bytes), so above 1 means sockstream is faster (smaller). Goals are the issue's.",
        "",
        "| workload | row | ratio | goal | mark |",
        "|---|---|---:|---|---|",
    ]
    for row in data["ratios"]:
        ratio = _fmt_ratio(row["ratio"])
        if row["why"]:
            ratio += f" ({row['why'][:80]})"
        lines.append(
            f"| {row['workload']} | {row['label']} | {ratio} | "
            f"{_fmt_goal(row['goal'])} | {row['mark']} |"
        )
    lines += [
        "",
        "## Cases",
        "",
        "| workload | case | side | median | min - max | rate |",
        "|---|---|---|---:|---|---:|",
    ]
    current = None
    for cid, c in data["cases"].items():
        if c["workload"] != current:
            current = c["workload"]
            size = cfg["sizes"].get(current, "")
            lines.append(f"| **{current}** | *{titles.get(current, '')}* ({size}) | | | | |")
        case = Case(cid, c["label"], c["side"], lambda e: 0.0, c["units"], c["unit"], c["kind"])
        if c["median"] is None:
            what = f"skipped: {c['skipped']}" if c["skipped"] else f"ERROR: {c['error']}"
            lines.append(f"| | {c['label']} | {c['side']} | {what} | | |")
            continue
        lines.append(
            f"| | {c['label']} | {c['side']} | {fmt_value(case, c['median'])} | "
            f"{fmt_value(case, c['min'])} - {fmt_value(case, c['max'])} | "
            f"{fmt_rate(case, c['median'])} |"
        )
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> str:
    """Draw the ratios as horizontal bars with the goals marked; returns a one-line message."""
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        return "--plot: matplotlib is not installed (pip install matplotlib); no plot written"
    shown = [r for r in rows if r["ratio"] is not None]
    if not shown:
        return "--plot: no ratio to plot"
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.2))
    labels = [f"{r['workload']} {r['label']}" for r in shown]
    values = [r["ratio"] for r in shown]
    colours = [
        "tab:red" if r["mark"] == "MISS" else "tab:green" if r["mark"] == "pass" else "tab:gray"
        for r in shown
    ]
    y = list(range(len(shown)))
    ax.barh(y, values, color=colours)
    for yi, r in zip(y, shown, strict=False):
        if r["goal"] is not None:
            ax.plot([r["goal"], r["goal"]], [yi - 0.4, yi + 0.4], color="black")
    ax.axvline(1.0, color="gray", linestyle=":")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed ratio sockstream / anchor (black tick: goal)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot written to {path}"


def write_json(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
