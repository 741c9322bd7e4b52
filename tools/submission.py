#!/usr/bin/env python3
"""Pack labs/ for Gradescope (make submission): the lab folders' sources (.c, .h, Makefile, Kbuild)
in build/submission.zip, laid out as in labs/ (01-signal/..., 02-sigaction/...).  Upload that zip,
or the lab folders themselves: the autograder takes either.

usage: tools/submission.py [--labs DIR] [--out FILE]
"""
from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = re.compile(r"^(.*\.[ch]|Makefile|Kbuild)$")


def main() -> int:
    ap = argparse.ArgumentParser(description="Pack labs/ for Gradescope.")
    ap.add_argument("--labs", default=str(REPO / "labs"))
    ap.add_argument("--out", default=str(REPO / "build" / "submission.zip"))
    a = ap.parse_args()
    labs, out = Path(a.labs), Path(a.out)
    files = sorted(p for d in labs.glob("[0-9][0-9]-*") if d.is_dir()
                   for p in d.rglob("*") if p.is_file() and not p.is_symlink() and SOURCES.match(p.name))
    if not files:
        print(f"submission: no lab sources in {labs}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            z.write(p, str(p.relative_to(labs)))
    print(f"submission: wrote {out} ({len(files)} files from {labs}); upload it to Gradescope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
