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
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
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

# --- what of a build's output a student is shown --------------------------------------------------
# A Kbuild file (a makefile) can print anything ($(warning $(shell ls /)), $(error $(shell cat ...))):
# the excerpt keeps the compiler's, the linker's, modpost's and make's own diagnostics about the
# submission's files (and the system's or kernel's headers), in their own shapes, and counts the rest.
_FILE = r"(?P<file>[^\s:'`]+)"
_DIAG = [
    re.compile(_FILE + r":\d+:(?:\d+:)? (?:fatal error|error|warning|note): "),  # gcc
    re.compile(_FILE + r": (?:In function|In member function|At top level|In macro)\b"),
    re.compile(r"(?:In file included|\s+) from " + _FILE + r":\d+[:,]$"),
    re.compile(_FILE + r":(?:\d+:|\(\.[\w.]+\+0x[0-9a-f]+\):) (?:undefined reference to|multiple definition of) `[\w.@]+'"),
    re.compile(_FILE + r": in function `[\w.]+':$"),  # ld, after its prefix
    re.compile(_FILE + r":\d+: \*\*\* (?:missing separator|missing 'endif'|missing 'endef'|invalid syntax in "
               r"conditional|extraneous text after '\w+' directive|unterminated variable reference|recipe "
               r"commences before first target|mixed implicit and normal rules)\b[\w '.]*\.  Stop\.$"),  # make
]
_TOOL = [  # the tools' own lines, with no file of their own
    re.compile(r"(?:cc1|cc1plus|collect2): (?:all |some )?(?:warnings being treated as errors|error: ld returned "
               r"\d+ exit status)$"),
    re.compile(r"compilation terminated\.$"),
    re.compile(r"make(?:\[\d+\])?: \*\*\* No rule to make target '[\w./-]+', needed by '[\w./-]+'\.  Stop\.$"),
    re.compile(r"(?:ERROR|WARNING): modpost: (?:\"\w+\" \[[\w./-]+\.ko\] undefined!|missing MODULE_LICENSE\(\) in "
               r"[\w./-]+\.o|[\w./-]+\.o: section mismatch in reference: [\w.()+/ -]+)$"),
]
_EXCERPT = re.compile(r"\s*\d* \| ")  # gcc's quote of the line and its caret: "   12 | code", "      |   ^~~"
_LD = re.compile(r"^(?:\S*/)?ld(?:\.bfd)?: ")
MAX_LINE = 300  # a diagnostic longer than this is cut


def about(f: str, own: list[str], folder: str = "", trusted: tuple[str, ...] = ()) -> bool:
    """Whether a diagnostic's file is one of the submission's (`own`, in `folder`), a trusted header, or the
    compiler's temporary object (the linker names it)."""
    if folder and f.startswith(folder.rstrip("/") + "/"):
        f = f[len(folder.rstrip("/")) + 1:]
    f = f[2:] if f.startswith("./") else f
    return f in own or bool(trusted) and f.startswith(trusted) or re.fullmatch(r"/tmp/cc\w+\.o", f) is not None


def diagnostics(log: str, own: list[str], folder: str = "", trusted: tuple[str, ...] = (), lines: int = 15) -> str:
    """The compiler's (linker's, modpost's, make's) diagnostics in `log` about the files named in `own`
    (or under a `trusted` prefix: system or kernel headers), from the first error, at most `lines`, and
    a count of the other lines, which are not shown (a build file may print what it found).
    `folder`: the build folder, shown as the files' own names."""
    kept: list[str] = []
    other = 0
    quoting = False  # the last diagnostic was kept: gcc's quote of the line below it is too
    for raw in log.splitlines():
        if not raw.strip():
            continue
        line = _LD.sub("", raw) if _LD.match(raw) else raw
        m = next((rx.match(line) for rx in _DIAG if rx.match(line)), None)
        if m is not None and about(m.group("file"), own, folder, trusted):
            kept.append(raw)
            quoting = True
        elif m is None and any(rx.match(line) for rx in _TOOL):
            kept.append(raw)
            quoting = False
        elif quoting and _EXCERPT.match(raw):
            kept.append(raw)
        else:
            other += 1
            quoting = False
    if folder:
        kept = [ln.replace(folder.rstrip("/") + "/", "") for ln in kept]
    kept = [ln if len(ln) <= MAX_LINE else ln[:MAX_LINE] + " [...]" for ln in kept]
    first = next((i for i, ln in enumerate(kept) if re.search(r"error|undefined|\*\*\*", ln)), 0)
    while first > 0 and not _EXCERPT.match(kept[first - 1]) and re.search(r" from |: In |: At ", kept[first - 1]):
        first -= 1
    shown = kept[first:first + lines]
    if other:
        shown.append(f"(the build printed {other} other line{'s' if other != 1 else ''}, not shown: only the "
                     f"compiler's and the linker's diagnostics about the submission's files are)")
    return "\n".join(shown) or "(the build printed nothing)"


class KmodError(Exception):
    """The build could not even start (no headers, no make): a one-line message."""


class NotRegular(Exception):
    """A file the build made (or a source) is a link or not a regular file: the message names it."""


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, which must be a regular file and not a symbolic link.

    The build runs the student's Kbuild (a makefile): what it leaves in its folder may be a link to a
    file only the grader can read; the grader never follows it (O_NOFOLLOW, then fstat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        if os.path.islink(path):
            raise NotRegular(f"{path.name} is a symbolic link (to {os.readlink(path)!r}), not a file the "
                             f"build made: the grader does not follow it") from None
        raise NotRegular(f"{path.name} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegular(f"{path.name} is not a regular file")
    return fd


def copy_regular(src: Path, dst: Path) -> None:
    """Copy `src` (a regular file, never through a link: open_regular) to a new file `dst`."""
    fd = open_regular(src)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f, open(dst, "wb") as out:
            shutil.copyfileobj(f, out)
    finally:
        os.close(fd)


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
    cached: bool = False  # the result of an earlier build of the very same sources
    sources: list[str] = field(default_factory=list)  # the names of the submission's files it built

    def summary(self, lines: int = 12) -> str:
        """What a student needs to see: the grader's own refusal, or the compiler's first diagnostics
        about the submission's files; never the rest of what the Kbuild file printed (diagnostics())."""
        if self.timed_out:
            return "the module build did not finish within its time limit"
        refusals = [e for e in self.errors if e not in self.log]  # the grader's words, not the build's
        if refusals:
            return "\n".join(refusals[:lines])
        return diagnostics(self.log, self.sources, trusted=_trusted(), lines=lines)


def _trusted() -> tuple[str, ...]:
    """Where diagnostics come from that are no one's output but the compiler's: the kernel's headers."""
    return (*KERNEL_HEADERS, str(fetch.CACHE) + "/")


def kdir() -> Path:
    version = fetch.recorded_version()
    if version is None or not fetch.is_complete(fetch.CACHE / version):
        raise KmodError(f"the VM kernel headers are not fetched: run `make fetch{fetch.make_arg()}`")
    return fetch.CACHE / version / "kdir"


def compiler_vars(k: Path) -> list[str]:
    """make variables for a host without the compiler the kernel was built with, or without pahole.

    Debian builds each kernel with its own release's gcc (Debian 12's 6.1 with gcc-12, Debian 13's 6.12
    with x86_64-linux-gnu-gcc-14) and its headers name it. When the host has it (Debian 12 for 6.1,
    Debian 13 for 6.12), nothing changes. Otherwise the host's gcc builds the module, with the two
    options of the kernel's configuration it cannot honour turned off on the command line: the
    function alignment option gcc 14 added (-fmin-function-alignment; kbuild then uses
    -falign-functions, as for older compilers) and BTF for modules. BTF for modules is off too when
    the host has no pahole, which makes it (Debian 13's 6.12 asks for it; a module loads without it)."""
    try:
        text = (k / ".config").read_text()
    except OSError:
        return []
    m = re.search(r'^CONFIG_CC_VERSION_TEXT="(\S+)', text, re.M)
    if m is not None and not shutil.which(m.group(1)):
        return ["CC=gcc", "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT=", "CONFIG_DEBUG_INFO_BTF_MODULES="]
    if re.search(r"^CONFIG_DEBUG_INFO_BTF_MODULES=y", text, re.M) and not shutil.which("pahole"):
        return ["CONFIG_DEBUG_INFO_BTF_MODULES="]
    return []


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


MODULE_CACHE = fetch.CACHE / "build" / "modules"
MODULE_CACHE_KEEP = 40  # builds kept (the oldest go first)
CACHE_FORMAT = "2"  # a new format (build.json's fields), or a fix to what a build may keep: old entries are not reused
KERNEL_HEADERS = ("include/", "arch/")  # where the kernel's headers' diagnostics come from (relative to kdir)


def build_module(src: Path, out: Path, *, w1: bool = False, extra_cflags: str = "", timeout: float = 300.0,
                 module: str | None = None, runner: Runner = run_here, cache: bool = False) -> ModuleBuild:
    """Copy src's module sources into out and run kbuild there.

    module: the name the build must produce (NAME.ko); a build that makes
    other modules only is a failure that says what Kbuild must say.
    cache: reuse the result of a build of the very same sources (and flags, kernel, compiler) from
    vm/cache/build/modules, and keep this one there: an unchanged module is not built again.
    """
    k = kdir()
    key = ""
    if cache and (src / "Kbuild").is_file():
        key = _module_key(src, w1, extra_cflags)
        hit = _cached_build(key, out)
        if hit is not None:
            return _expect_module(hit, module)
    b = _build_module(src, out, k, w1, extra_cflags, timeout, module, runner)
    if key and not b.timed_out and b.ok:  # a failure may be the machine's (a fork refused under load): not kept
        _keep_build(key, b)
    return _expect_module(b, module)


def _expect_module(build: ModuleBuild, module: str | None) -> ModuleBuild:
    """A build that made other modules only is a failure that says what Kbuild must say."""
    if build.ok:
        if module is not None and module not in build.kos:
            build.ok = False
            build.errors = [f"kbuild made {', '.join(sorted(build.kos)) or 'no .ko file'}, not {module}.ko: "
                            f"Kbuild must say obj-m += {module}.o"]
        elif not build.kos:
            build.ok = False
            build.errors = ["kbuild made no .ko file: does Kbuild say obj-m += name.o?"]
    return build


def _module_key(src: Path, w1: bool, extra_cflags: str) -> str:
    srcs = [f for pat in SOURCES for f in src.glob(pat) if f.is_file() and not f.is_symlink()]
    return content_key(srcs, f"w1={w1}", extra_cflags, f"cache={CACHE_FORMAT}")


def is_cached(src: Path, w1: bool = False, extra_cflags: str = "") -> bool:
    """Whether build_module(..., cache=True) would reuse an earlier build of these sources."""
    return (src / "Kbuild").is_file() and (MODULE_CACHE / _module_key(src, w1, extra_cflags) / "build.json").is_file()


def _cached_build(key: str, out: Path) -> ModuleBuild | None:
    d = MODULE_CACHE / key
    try:
        meta = json.loads((d / "build.json").read_text())
    except (OSError, ValueError):
        return None
    out.mkdir(parents=True, exist_ok=True)
    kos = {}
    for name in meta["kos"]:
        shutil.copyfile(d / f"{name}.ko", out / f"{name}.ko")
        kos[name] = out / f"{name}.ko"
    os.utime(d)  # recently used
    return ModuleBuild(meta["ok"], meta["log"], kos, meta["warnings"], meta["errors"], cached=True,
                       sources=meta.get("sources", []))


def _keep_build(key: str, b: ModuleBuild) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=_mkdirs(MODULE_CACHE)))
    try:
        for name, ko in b.kos.items():
            try:
                copy_regular(ko, tmp / f"{name}.ko")  # never what a link points to
            except NotRegular:
                return  # not kept (the build's own check refused it already)
        (tmp / "build.json").write_text(json.dumps({"ok": b.ok, "log": b.log, "kos": sorted(b.kos),
                                                    "warnings": b.warnings, "errors": b.errors,
                                                    "sources": b.sources}))
        try:
            os.rename(tmp, MODULE_CACHE / key)
        except OSError:
            pass  # kept by another build of the same sources
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(MODULE_CACHE.iterdir(), key=lambda d: d.stat().st_mtime)
    for d in olds[:-MODULE_CACHE_KEEP]:
        shutil.rmtree(d, ignore_errors=True)


def _mkdirs(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return d


def _build_module(src: Path, out: Path, k: Path, w1: bool, extra_cflags: str, timeout: float, module: str | None,
                  runner: Runner) -> ModuleBuild:
    if not (src / "Kbuild").is_file():
        wanted = module or "name"
        return ModuleBuild(False, "", errors=[f"{src.name}/Kbuild is missing (it names the module: "
                                              f"obj-m += {wanted}.o)"])
    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for pattern in SOURCES:
        for f in src.glob(pattern):
            if f.is_file() and not f.is_symlink():
                try:
                    copy_regular(f, out / f.name)
                except NotRegular:
                    continue  # replaced since the glob: skipped, like any link among the sources
                sources.append(f.name)
    argv = ["make", "-s", "-C", str(k), f"M={out}", "modules", *compiler_vars(k)]
    if w1:
        argv.append("W=1")
    if extra_cflags:
        argv.append(f"EXTRA_CFLAGS={extra_cflags}")
    status, log = runner(argv, out, timeout)
    log = log.replace(str(out) + "/", "")
    if status is None:
        return ModuleBuild(False, log, timed_out=True, sources=sources)
    # only diagnostics about the submission's files or the kernel's headers: a Kbuild can print lines of that shape
    warnings = [w for w in WARNING.findall(log) if about(w.split(":", 1)[0], sources, trusted=_trusted())]
    build = ModuleBuild(status == 0, log, warnings=[w[:MAX_LINE] for w in warnings], errors=ERROR.findall(log),
                        sources=sources)
    if build.ok:
        kos = sorted(out.glob("*.ko"))
        bad = []
        for ko in kos:
            try:
                os.close(open_regular(ko))
            except NotRegular as e:
                bad.append(f"{e} (the module must be the file kbuild links, not a link or anything else)")
        if bad:
            build.ok, build.errors = False, bad
        else:
            build.kos = {p.stem: p for p in kos}
    return build


BOARD_FILES = ("wb_board.ko", "button")


def _toolchain() -> str:
    """What a build's output depends on besides its sources: the kernel and the compiler."""
    try:
        gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        gcc = "gcc?"
    try:
        flags = " ".join(compiler_vars(kdir()))
    except KmodError:
        flags = ""
    return f"{fetch.recorded_version()}\0{gcc}\0{flags}"


def content_key(files: list[Path], *extra: str) -> str:
    """A digest of the files' names and contents, the toolchain, and `extra`."""
    h = hashlib.sha256(_toolchain().encode())
    for e in extra:
        h.update(b"\0" + e.encode())
    for f in sorted(files):
        h.update(b"\0" + f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def build_board(out: Path | None = None, say: Callable[[str], None] | None = None) -> dict[str, Path]:
    """The simulated button board (driver/): {"wb_board.ko": ..., "button": ...}.

    Cached in vm/cache/build/board-KEY, KEY a digest of driver/'s sources, the kernel version and the
    compiler, and shared by `make vm` and every grading: a second build with nothing changed builds
    nothing.  `out`: build there instead (no cache)."""
    if out is not None:
        return _make_board(out)
    srcs = [p for p in BOARD.rglob("*") if p.is_file() and p.suffix in (".c", ".h") or p.name in ("Kbuild", "Makefile")]
    cache = fetch.CACHE / "build" / f"board-{content_key(srcs)}"
    files = {name: cache / name for name in BOARD_FILES}
    if all(p.is_file() for p in files.values()):
        return files
    if say:
        say("building the button board (driver/, once for this kernel and these sources) ...")
    # Beside the cache (vm/cache/build may not exist yet on a fresh cache): the rename below must not cross file systems.
    tmp = Path(tempfile.mkdtemp(prefix=".board-", dir=_mkdirs(cache.parent)))
    try:
        _make_board(tmp)
        final = tmp.with_name(tmp.name + ".done")
        final.mkdir()
        for name in BOARD_FILES:
            os.replace(tmp / name, final / name)
        try:
            os.rename(final, cache)  # atomic; another grading may have won the race: then use its copy
        except OSError:
            shutil.rmtree(final, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return files


def _make_board(out: Path) -> dict[str, Path]:
    status, log = run_here(["make", "-s", "-C", str(BOARD), f"OUT={out}", "modules", "button",
                            *compiler_vars(kdir())], BOARD, 600.0)
    files = {name: out / name for name in BOARD_FILES}
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
    b = build_module(out, out / "build", module=name, cache=True)
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
        # your own build: all it printed (the grader shows only the diagnostics, summary())
        refusals = [e for e in b.errors if e not in b.log]
        shown = "\n".join([b.log.strip()] * (not b.timed_out) + refusals) or b.summary()
        print(f"kmod: the module does not build:\n{shown}", file=sys.stderr)
        return 1
    for w in b.warnings:
        print(w)
    for name, path in b.kos.items():
        print(f"kmod: built {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
