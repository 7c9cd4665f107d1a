"""CI smoke test of the benchmark suite: it runs and reports; the numbers are not checked.

Performance is measured by `python -m bench` (see docs/bench.md), never in timed unit tests.  This
runs the smallest size (`--tiny`) of W1 and W2 once, in a subprocess as a user would, and checks
that the ratio table and the JSON come out and that no case failed (a failed case means the
sockstream read path returned wrong data or raised).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, timeout: float = 50) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_tiny_w1_w2_reports_ratio_table(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = _run("--tiny", "--only", "W1,W2", "--repeat", "1", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ratio table" in done.stdout
    assert "W1 read_sequence / recv_into" in done.stdout
    assert "W2 readline (bytes) / makefile('rb').readline" in done.stdout
    data = json.loads(out.read_text())
    assert data["config"]["mode"] == "tiny"
    assert data["machine"]["python"]
    anchors = {cid: c for cid, c in data["cases"].items() if c["side"] == "anchor"}
    assert anchors["W1.recv_into"]["median"] > 0
    assert anchors["W2.makefile_rb"]["median"] > 0
    rows = {r["label"]: r for r in data["ratios"]}
    assert rows["read_sequence / recv_into"]["goal"] == 0.95
    # A run of only some workloads writes nothing into bench/ unless asked (--out).
    assert not (tmp_path / "RESULTS.md").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "W99"], "--only must name workloads"),
        (["--repeat", "0"], "--repeat must be a positive integer"),
        (["--quick", "--tiny"], "not allowed with"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str) -> None:
    done = _run(*args, timeout=20)
    assert done.returncode == 2
    assert message in done.stderr


def test_serving_echo_runs_every_load_shape(tmp_path: Path) -> None:
    # bench/serving.py's echo rows (issue 16): each load generator, both servers, briefly.
    out = tmp_path / "serving.json"
    args = ["echo", "--repeat", "1", "--clients", "4", "--seconds", "0.2", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.serving", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr  # (no server met a reset: the load generators drain)
    modes = json.loads(out.read_text())["echo"]["modes"]
    assert set(modes) == {"epoll", "epoll-pinned", "threads"}
    for row in modes.values():
        assert row["sockstream"]["median"] > 0
        assert row["socketserver"]["median"] > 0
        assert row["sockstream_server_cpu_us"]["median"] > 0
