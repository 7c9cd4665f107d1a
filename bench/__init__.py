"""sockstream's benchmark suite: `python -m bench` or `sockstream bench`.

Each workload (W1-W7 and MEM, see docs/bench.md) measures sockstream and the alternatives a user
would pick, in one run, against a separate sender process over loopback TCP, and reports speed
ratios next to the goals of issue 7.  `main(argv)` is the whole command line.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "MEM"]
_MODULES = {
    "W1": "w1_bulk",
    "W2": "w2_lines",
    "W3": "w3_chars",
    "W4": "w4_writes",
    "W5": "w5_pingpong",
    "W6": "w6_tls",
    "W7": "w7_wait",
    "W8": "w8_framing",
    "W9": "w9_text",
    "MEM": "mem",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sockstream bench",
        description="Benchmark sockstream against the standard library, asyncio, anyio, trio "
        "and C, and report speed ratios against the goals of issue 7.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes: the whole suite in well under 2 minutes",
    )
    size.add_argument(
        "--tiny",
        action="store_true",
        help="smallest sizes, for the CI smoke test (numbers are noise)",
    )
    p.add_argument(
        "--only", metavar="W1,W2,...", help=f"run only these workloads (of {','.join(WORKLOADS)})"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="runs per case; the report uses the median (default 3)",
    )
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="draw the ratios (needs matplotlib)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write results.json and RESULTS.md into DIR (default: bench/ for a "
        "full run of every workload, nowhere otherwise)",
    )
    return p


def _select(only: str | None) -> list[str]:
    if not only:
        return list(WORKLOADS)
    chosen = [w.strip().upper() for w in only.split(",") if w.strip()]
    bad = [w for w in chosen if w not in WORKLOADS]
    if bad or not chosen:
        raise ValueError(f"--only must name workloads among {','.join(WORKLOADS)}, not {only!r}")
    return [w for w in WORKLOADS if w in chosen]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named by `argv` (default: sys.argv[1:]); 0 when no case failed."""
    import importlib

    from . import _harness as h
    from . import _report as rep

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        selected = _select(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error(f"--repeat must be a positive integer, not {args.repeat}")
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    # A plain `kill` must still stop the sender and remove the temporary certificates.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    env = h.Env(mode, args.repeat)
    try:
        modules: dict[str, Any] = {
            w: importlib.import_module(f"bench.{_MODULES[w]}") for w in selected
        }
        plan = []
        ratios = []
        sizes = {}
        for w, mod in modules.items():
            cases, rs = mod.build(env)
            plan.append((w, cases))
            ratios += rs
            sizes[w] = mod.describe_size(env)
        total = sum(len(cases) for _, cases in plan) * args.repeat
        sys.stderr.write(
            f"sockstream bench: mode {mode}, workloads {','.join(selected)}, {total} runs\n"
        )
        if env.sockstream is None:
            sys.stderr.write(f"note: {env.sockstream_missing}; sockstream cases are skipped\n")
        else:
            sys.stderr.write(f"sockstream implementation: {rep.implementation()}\n")
        progress = h.Progress(total)
        try:
            results = h.run_cases(env, plan, progress)
        finally:
            progress.close()
    finally:
        env.close()

    facts = rep.machine_facts()
    rows = rep.compute_ratios(results, ratios)
    sys.stdout.write(rep.text_tables(results, rows))
    sys.stdout.flush()

    data = rep.to_json(env, facts, results, rows, sizes)
    titles = {w: mod.TITLE for w, mod in modules.items()}
    notes = [n for mod in modules.values() for n in getattr(mod, "NOTES", [])]
    out = Path(args.out) if args.out else None
    if out is None and mode == "full" and not args.only:
        out = Path(__file__).resolve().parent
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rep.write_json(data, out / "results.json")
        from .serving import keep_section

        results_md = out / "RESULTS.md"
        old = results_md.read_text() if results_md.exists() else ""
        results_md.write_text(keep_section(old, rep.markdown(data, titles, notes)))
        sys.stderr.write(f"results written to {out / 'RESULTS.md'} and results.json\n")
    if args.json:
        rep.write_json(data, Path(args.json))
    if args.plot:
        sys.stderr.write(rep.plot(rows, Path(args.plot)) + "\n")
    failed = [r for r in results if r.error]
    return 1 if failed else 0
