#!/usr/bin/env python3
"""Points per lab from the grader's results.json (make grade writes grader/out/results.json).

usage: tools/points.py [RESULTS_JSON]

Prints one line per lab and the total.  In a GitHub Actions job it also writes them to the job's
summary (GITHUB_STEP_SUMMARY) and as a notice per lab.  `make grade`'s exit status only says full
marks or not: this says how far each lab got.  Exit status: 0 when the file was read, 2 when not.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def per_lab(data: dict) -> dict[int, list[float]]:
    labs: dict[int, list[float]] = {}
    for t in data.get("tests", []):
        tag = next((x for x in t.get("tags", []) if re.fullmatch(r"lab \d+", x)), None)
        m = re.match(r"lab (\d+)", tag) if tag else re.match(r"Lab (\d+)", t.get("name", ""))
        if not m:
            continue
        got = labs.setdefault(int(m.group(1)), [0, 0])
        got[0] += t.get("score", 0)
        got[1] += t.get("max_score", 0)
    return labs


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else REPO / "grader" / "out" / "results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"points: no results to read ({path}: {e}); the grader did not finish", file=sys.stderr)
        return 2
    labs = per_lab(data)
    lines = [f"Lab {n}: {got:g}/{tot:g}" for n, (got, tot) in sorted(labs.items())]
    lines.append(f"Total: {data.get('score', 0):g}/{data.get('max_score', 0):g}")
    print("\n".join(lines))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for n, (got, tot) in sorted(labs.items()):
            print(f"::notice title=Lab {n}::{got:g}/{tot:g} points")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a") as f:
                f.write("| Lab | Points |\n|---|---|\n")
                f.writelines(f"| {n} | {got:g}/{tot:g} |\n" for n, (got, tot) in sorted(labs.items()))
                f.write(f"| **Total** | **{data.get('score', 0):g}/{data.get('max_score', 0):g}** |\n\n")
                f.write("This score is advisory: your course's grade comes from the instructor's grader.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
