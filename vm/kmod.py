#!/usr/bin/env python3
"""Build a kernel module against the VM kernel's cached headers.

    from vm.kmod import build_module
    b = build_module(Path("labs/03-fasync-button"), Path("/tmp/out"), w1=True)
    if not b.ok:
        print(b.summary())          # the compiler's first errors
    b.kos                           # {"button_driver": Path(".../button_driver.ko")}
    b.warnings                      # compiler warnings (W=1 adds the kernel's extra ones)

The sources (*.c, *.h, Kbuild) are copied into `out` and built there, because
kbuild builds external modules in place; the source folder is never written.
The folder needs a Kbuild file (obj-m += name.o). Also a command line tool:

    vm/kmod.py SRC_DIR OUT_DIR [--w1]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vm import fetch  # noqa: E402

SOURCES = ("*.c", "*.h", "Kbuild")
BOARD = Path(__file__).resolve().parent.parent / "driver"
WARNING = re.compile(r"^(\S+:\d+:\d+: warning: .*)$", re.M)
ERROR = re.compile(r"^(\S+:\d+:\d+: (?:fatal )?error: .*)$", re.M)
MODPOST = re.compile(r"^(?:WARNING|ERROR): modpost: .*$", re.M)


class KmodError(Exception):
    """The build could not even start (no headers, no make): a one-line message."""


# How a build is run: (argv, cwd, timeout) -> (exit status, or None when it
# timed out; everything it printed). The grader passes one that runs the
# build inside its sandbox, because a Kbuild file is a makefile.
Runner = Callable[[list[str], Path, float], tuple[Optional[int], str]]


@dataclass
class ModuleBuild:
    ok: bool
    log: str
    kos: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False

    def summary(self, lines: int = 12) -> str:
        """What a student needs to see: the first errors (or the log's tail)."""
        if self.timed_out:
            return "the module build did not finish within its time limit"
        picked = self.errors or MODPOST.findall(self.log) or self.log.strip().splitlines()[-lines:]
        return "\n".join(picked[:lines]) or "(kbuild printed nothing)"


def kdir() -> Path:
    version = fetch.recorded_version()
    if version is None or not fetch.is_complete(fetch.CACHE / version):
        raise KmodError("the VM kernel headers are not fetched: run `python3 vm/fetch.py` (or `make fetch`)")
    return fetch.CACHE / version / "kdir"


def run_here(argv: list[str], cwd: Path, timeout: float) -> tuple[Optional[int], str]:
    """The default Runner: a plain subprocess, without a parent make's flags."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    try:
        res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise KmodError(f"{argv[0]} not found: run `make deps`") from None
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        return None, out.decode(errors="replace") if isinstance(out, bytes) else out
    return res.returncode, res.stdout + res.stderr


def build_module(src: Path, out: Path, *, w1: bool = False, extra_cflags: str = "", timeout: float = 300.0,
                 module: str | None = None, runner: Runner = run_here) -> ModuleBuild:
    """Copy src's module sources into out and run kbuild there.

    module: the name the build must produce (NAME.ko); a build that makes
    other modules only is a failure that says what Kbuild must say.
    """
    k = kdir()
    if not (src / "Kbuild").is_file():
        wanted = module or "name"
        return ModuleBuild(False, "", errors=[f"{src.name}/Kbuild is missing (it names the module: "
                                              f"obj-m += {wanted}.o)"])
    out.mkdir(parents=True, exist_ok=True)
    for pattern in SOURCES:
        for f in src.glob(pattern):
            if f.is_file() and not f.is_symlink():
                shutil.copyfile(f, out / f.name)
    argv = ["make", "-s", "-C", str(k), f"M={out}", "modules"]
    if w1:
        argv.append("W=1")
    if extra_cflags:
        argv.append(f"EXTRA_CFLAGS={extra_cflags}")
    status, log = runner(argv, out, timeout)
    log = log.replace(str(out) + "/", "")
    if status is None:
        return ModuleBuild(False, log, timed_out=True)
    build = ModuleBuild(status == 0, log, warnings=WARNING.findall(log), errors=ERROR.findall(log))
    if build.ok:
        build.kos = {p.stem: p for p in sorted(out.glob("*.ko"))}
        if module is not None and module not in build.kos:
            build.ok = False
            build.errors = [f"kbuild made {', '.join(sorted(build.kos)) or 'no .ko file'}, not {module}.ko: "
                            f"Kbuild must say obj-m += {module}.o"]
        elif not build.kos:
            build.ok = False
            build.errors = ["kbuild made no .ko file: does Kbuild say obj-m += name.o?"]
    return build


def build_board(out: Path) -> dict[str, Path]:
    """The simulated button board (driver/): {"wb_board.ko": ..., "button": ...} built in out."""
    status, log = run_here(["make", "-s", "-C", str(BOARD), f"OUT={out}", "modules", "button"], BOARD, 600.0)
    files = {name: out / name for name in ("wb_board.ko", "button")}
    if status != 0 or not all(p.is_file() for p in files.values()):
        raise KmodError("the button board (driver/) does not build:\n" + log[-2000:])
    return files


def build_as(src: Path, out: Path, name: str) -> Path:
    """The .c and .h files of `src` built as one module NAME.ko (a reference driver under another
    name than the student's): our own code, built with the default runner. Returns the .ko."""
    out.mkdir(parents=True, exist_ok=True)
    objs = []
    for f in sorted(src.iterdir()):
        if f.suffix in (".c", ".h") and f.is_file():
            shutil.copyfile(f, out / f.name)
            if f.suffix == ".c":
                objs.append(f.stem + ".o")
    (out / "Kbuild").write_text(f"obj-m += {name}.o\n{name}-y := {' '.join(objs)}\n")
    b = build_module(out, out / "build", module=name)
    if not b.ok:
        raise KmodError(f"{src} does not build as {name}.ko:\n{b.summary()}")
    return b.kos[name]


def main() -> int:
    ap = argparse.ArgumentParser(description="Build a module against the VM kernel's headers.")
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--w1", action="store_true", help="with the kernel's extra warnings (W=1)")
    args = ap.parse_args()
    try:
        b = build_module(args.src.resolve(), args.out.resolve(), w1=args.w1)
    except KmodError as e:
        print(f"kmod: {e}", file=sys.stderr)
        return 1
    if not b.ok:
        print(f"kmod: the module does not build:\n{b.summary()}", file=sys.stderr)
        return 1
    for w in b.warnings:
        print(w)
    for name, path in b.kos.items():
        print(f"kmod: built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
