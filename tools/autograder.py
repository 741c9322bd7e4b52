#!/usr/bin/env python3
"""Write the Gradescope autograder archive (make autograder).

usage: tools/autograder.py [--out FILE] [--labs "1 2 3"] [--time-limit SECONDS]

The archive (default build/autograder.zip) holds, at its top, as Gradescope's autograder
specification asks:
    setup.sh          tools/gradescope/setup.sh: Ubuntu 22.04's packages, the sandbox's user,
                      version checks, one boot of the VM
    run_autograder    tools/gradescope/run_autograder: grades /autograder/submission
    autograder.conf   the settings: LABS (which labs to grade), TIME_LIMIT (seconds)
    workbook.tar.gz   the grader (grader/ without its own tests), vm/, driver/, the chapters'
                      README.md (task titles) and the VM's kernel, headers and busybox from
                      vm/cache: the grading container need not reach Debian's archive
    README.txt        what this is
No solutions and no starter code go in.  The files are the repository's tracked files as they
are in the working tree (git ls-files), or every file when there is no git.  What is derived from
the solutions (grader/reference/: lab 3's driver, which labs 4-6 are graded against) is root's
alone in the tarball (folders 0700, files 0600), and workbook.tar.gz itself is 0600: student code
runs as another user, and in Gradescope's container (no namespaces) it sees the file system.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from vm import fetch  # noqa: E402

# What the grader needs from the repository, and what it must not carry.
INCLUDE = [r"^grader/", r"^vm/", r"^driver/", r"^labs/\d\d-[^/]+/README\.md$", r"^labs/README\.md$"]
EXCLUDE = [r"^grader/(selftests|hostile|out)/", r"^grader/bench", r"/__pycache__/", r"^vm/cache/", r"\.pyc$",
           r"(^|/)build/"]
# From vm/cache/VERSION: what the grader boots and builds against (not Debian's docs, not the busybox package).
CACHE_FILES = ["vmlinux", "busybox", "config", "System.map", "complete", "kdir"]
CACHE_TREES = ["root/usr/src", "root/usr/lib"]
# Derived from the solutions: readable by root only, once unpacked.
PRIVATE = [r"^grader/reference(/|$)"]


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() or p.is_symlink()]
    keep = [n for n in names if any(re.search(i, n) for i in INCLUDE) and not any(re.search(x, n) for x in EXCLUDE)]
    return sorted(n for n in keep if (REPO / n).exists() or (REPO / n).is_symlink())


def graded_labs() -> list[int]:
    return sorted({int(m.group(1)) for p in (REPO / "grader" / "tests").glob("test_lab*_*.py")
                   if (m := re.match(r"test_lab(\d+)_", p.name))})


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    info = tar.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode &= 0o755  # nothing writable by others once unpacked
    if any(re.search(p, name) for p in PRIVATE):
        info.mode &= 0o700  # nor readable
    if info.isreg():
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        tar.addfile(info)


def workbook_tarball(version: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        names = tracked_files()
        private = {str(d) for n in names for d in Path(n).parents if any(re.search(p, str(d)) for p in PRIVATE)}
        for d in sorted(private):
            _add(tar, REPO / d, d)  # the private folders themselves, before their files
        for name in names:
            _add(tar, REPO / name, name)
        cache = fetch.CACHE / version
        info = tarfile.TarInfo("vm/cache/current")
        data = f"{version}\n".encode()
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
        for name in CACHE_FILES:
            _add(tar, cache / name, f"vm/cache/{version}/{name}")
        for tree in CACHE_TREES:
            for dirpath, dirnames, filenames in os.walk(cache / tree):
                dirnames.sort()
                for n in sorted(dirnames + filenames):
                    p = Path(dirpath) / n
                    _add(tar, p, f"vm/cache/{version}/{p.relative_to(cache)}")
    return buf.getvalue()


def _zip_add(z: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions (unzip keeps them)
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def build(out: Path, labs: list[int], time_limit: float) -> Path:
    version = fetch.recorded_version()
    if version is None or not fetch.is_complete(fetch.CACHE / version):
        raise SystemExit("autograder: the VM's kernel is not fetched: run `make fetch` first")
    known = graded_labs()
    unknown = [n for n in labs if n not in known]
    if unknown:
        raise SystemExit(f"autograder: no tests for lab {', '.join(map(str, unknown))} (labs with tests: "
                         f"{', '.join(map(str, known))})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    conf = (f"# The autograder's settings (make autograder LABS=... TIME_LIMIT=... writes them).\n"
            f"# LABS: the labs graded, each worth 100 points.  TIME_LIMIT: seconds for the whole grading;\n"
            f"# keep it below the assignment's limit on Gradescope (10 minutes unless you raised it).\n"
            f"LABS=\"{' '.join(map(str, labs))}\"\nTIME_LIMIT={time_limit:g}\n"
            f"# made from {commit}, VM kernel {version}\n")
    readme = (f"The Signal-Driven I/O Workbook's autograder for Gradescope (labs {', '.join(map(str, labs))}).\n"
              f"Upload this zip as the assignment's autograder, with Base Image OS Ubuntu, Version 22.04.\n"
              f"setup.sh installs Ubuntu's packages and unpacks workbook.tar.gz (the grader, the VM's kernel,\n"
              f"headers and busybox); run_autograder grades /autograder/submission.  See the workbook's\n"
              f"README.md, section For instructors.\n")
    try:
        with zipfile.ZipFile(tmp, "w") as z:
            _zip_add(z, "setup.sh", (REPO / "tools" / "gradescope" / "setup.sh").read_bytes(), 0o755)
            _zip_add(z, "run_autograder", (REPO / "tools" / "gradescope" / "run_autograder").read_bytes(), 0o755)
            _zip_add(z, "autograder.conf", conf.encode(), 0o644)
            _zip_add(z, "README.txt", readme.encode(), 0o644)
            info = zipfile.ZipInfo("workbook.tar.gz", date_time=time.localtime()[:6])
            info.external_attr = 0o100600 << 16  # it carries grader/reference/: root's alone
            z.writestr(info, workbook_tarball(version), compress_type=zipfile.ZIP_STORED)  # gzip already
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="Write the Gradescope autograder archive.")
    ap.add_argument("--out", default=str(REPO / "build" / "autograder.zip"))
    ap.add_argument("--labs", default="", help='the labs to grade, e.g. "1 2" (default: every lab with tests)')
    ap.add_argument("--time-limit", type=float, default=540.0, help="seconds for one grading (default 540)")
    a = ap.parse_args()
    words = a.labs.replace(",", " ").split()
    labs = sorted({int(w) for w in words}) if words else graded_labs()
    t0 = time.monotonic()
    out = build(Path(a.out), labs, a.time_limit)
    size = out.stat().st_size / (1 << 20)
    print(f"autograder: wrote {out} ({size:.0f} MB, labs {', '.join(map(str, labs))}, "
          f"{time.monotonic() - t0:.0f} s); upload it to Gradescope (Ubuntu 22.04 base image)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
