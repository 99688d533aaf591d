"""Run the benchmark scripts one after another and write their figures as one markdown table.

    python -m tests.bench                       # the quick set (a few minutes on 2 cores)
    python -m tests.bench --all                 # also the full-size model and loading figures
    python -m tests.bench --only threads,executor --out tests/bench/results.md

Each script runs in its own process (so its imports, memory and threads are its own) with a time
limit; the table lists each one's command and the lines it printed, under the date, the machine
and its load average (a shared machine's load changes the figures). The README's performance
section quotes the latest table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[1]

#: (name, arguments, in the quick set, time limit in seconds)
SCRIPTS = [
    ("executor", [], True, 300),
    ("default_workflow", [], True, 300),
    ("threads", ["--runs", "5"], True, 600),
    ("samplers", [], True, 900),
    ("embedding", [], True, 600),
    ("sweep", [], True, 900),
    ("sweep_ray", [], False, 900),
    ("models", ["--tiny"], True, 900),
    ("conv", [], True, 900),
    ("linear", [], True, 900),
    ("models", ["--bf16"], False, 1800),
    ("pipeline", ["--tiny"], True, 900),
    ("pipeline", [], False, 3600),
    ("models", ["--full", "--threads", "1"], False, 3600),
    ("models", ["--sdxl"], False, 3600),
    ("loading", [], False, 3600),
    ("embedded_quality", [], False, 3600),
    ("gpu", [], False, 900),
]


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def run(name: str, arguments: list[str], limit: int) -> tuple[str, list[str]]:
    """The command line and the lines it printed (or why it stopped)."""
    script = BENCH / f"bench_{name}.py"
    command = [sys.executable, str(script), *arguments]
    shown = " ".join([f"bench_{name}.py", *arguments])
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                                env=os.environ | {"PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return shown, [f"stopped after {limit} s"]
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0:
        lines.append(f"exit status {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return shown, lines


def table(rows: list[tuple[str, list[str]]], load: float) -> str:
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"Benchmarks of {now} on {machine()}; load average before: {load:.2f}.", "",
           "| script | figures |", "|---|---|"]
    out += [f"| `{cell(command)}` | {'<br>'.join(cell(line) for line in lines)} |" for command, lines in rows]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the benchmarks; write a markdown table.")
    parser.add_argument("--all", action="store_true", help="also the full-size runs (an hour or more)")
    parser.add_argument("--only", help="comma-separated names, e.g. threads,executor")
    parser.add_argument("--out", type=Path, default=BENCH / "results.md")
    args = parser.parse_args()
    chosen = set(args.only.split(",")) if args.only else None
    rows, load = [], os.getloadavg()[0]
    for name, arguments, quick, limit in SCRIPTS:
        if (chosen is not None and name not in chosen) or (chosen is None and not (quick or args.all)):
            continue
        print(f"running bench_{name}.py {' '.join(arguments)}", file=sys.stderr, flush=True)
        rows.append(run(name, arguments, limit))
    text = table(rows, load)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
