"""What a graded test sees: a lab built in a scratch copy, and its programs
run contained, with outcomes that explain themselves to a student."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import diagnose, sandbox
from .timescale import scale
from .sandbox import Limits, clean_text

GRADER = Path(__file__).resolve().parent.parent
REPO = GRADER.parent
if str(REPO) not in sys.path:  # vm/ (kmod: what of a build's output is shown) is at the top of the repository
    sys.path.append(str(REPO))

from vm.kmod import diagnostics  # noqa: E402

# Every wait is a nominal time times timescale.scale(): the machine's speed, and the hostile corpus's
# factor (grader/grade --time-scale 0.1), where every wait is expected to expire.

CFLAGS = ["-g", "-O1", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
SANITIZER_ENV = {
    # verify_asan_link_order=0: the checker's LD_PRELOAD library comes before libasan.
    "ASAN_OPTIONS": "detect_leaks=0:verify_asan_link_order=0:allocator_may_return_null=1:"
    "hard_rss_limit_mb=1024:abort_on_error=0:handle_abort=0",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}

# Why a program may have died of a signal, in words a student can act on.
SIGNAL_HINTS: dict[int, str] = {
    signal.SIGSEGV: "a segmentation fault: an invalid memory access",
    signal.SIGBUS: "a bus error: an invalid memory access",
    signal.SIGABRT: "abort(): an assertion or the C library found a fatal error",
    signal.SIGFPE: "an arithmetic error such as division by zero",
    signal.SIGILL: "an illegal instruction (often undefined behaviour)",
    signal.SIGIO: "SIGIO's default action terminates the process: it was neither caught nor blocked when it came "
                  "(a handler, or the mask, must be in place before O_ASYNC is enabled)",
    signal.SIGINT: "SIGINT's default action: the program neither caught nor blocked SIGINT",
    signal.SIGTERM: "SIGTERM's default action: the program neither caught nor blocked SIGTERM",
    signal.SIGUSR1: "SIGUSR1's default action: the program neither caught nor blocked SIGUSR1 (or a handler was "
                    "reset to SIG_DFL)",
    signal.SIGUSR2: "SIGUSR2's default action: the program did not catch SIGUSR2 (or the handler was reset to SIG_DFL)",
    signal.SIGHUP: "SIGHUP's default action: the program did not catch SIGHUP",
    signal.SIGALRM: "SIGALRM's default action: an alarm() fired with no handler",
    signal.SIGPIPE: "writing to a pipe or socket nobody reads",
    signal.SIGXCPU: "it used more CPU time than allowed (an endless loop?)",
    signal.SIGXFSZ: "it wrote a file larger than allowed",
    signal.SIGKILL: "SIGKILL (the grader kills programs that exceed their limits)",
}


def signame(sig: int) -> str:
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    if signal.SIGRTMIN <= sig <= signal.SIGRTMAX:
        name = f"SIGRTMIN+{sig - signal.SIGRTMIN}" if sig != signal.SIGRTMIN else "SIGRTMIN"
    return name


def tail(text: str, lines: int = 12, chars: int = 1500, width: int = 200) -> str:
    """The last `lines` lines of a program's output for a message; a line longer than `width` is cut
    and says so, and the whole is at most about `chars` characters."""
    cut = [ln if len(ln) <= width else f"{ln[:width - 30]} ... (the line goes on)"
           for ln in text.rstrip("\n").splitlines()[-lines:]]
    return "\n".join(cut)[-chars:]


@dataclass
class Program:
    """One program of a lab: its sources in the lab folder, and how the grader builds it."""

    sources: list[str]
    std: str = "gnu11"
    cflags: list[str] = field(default_factory=list)
    ldflags: list[str] = field(default_factory=list)
    sanitize: bool = True


@dataclass
class LabSpec:
    number: int
    folder: str
    programs: dict[str, Program] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.folder


@dataclass
class Outcome:
    """How a run ended, what it printed, and what the signal-safety checker saw."""

    what: str  # the command, for messages
    exitcode: int | None
    signal: int | None
    timed_out: bool
    timeout: float
    flooded: bool
    stdout: str
    stderr: str
    sigsafe: list[str]  # the checker's calls from handlers to functions that are not async-signal-safe
    killed_for: str | None = None  # the sandbox's watchdog: memory or disk
    after_signal: str = ""  # what it printed after the test's first signal reached it
    state: diagnose.ProcState | None = None  # where it was when the grader stopped waiting
    stopped: str = ""  # the grader stopped it: why (instead of a timeout of its own)
    sigsafe_errno: list[str] = field(default_factory=list)  # the checker's handlers that changed errno

    def describe(self) -> str:
        if self.flooded:
            return f"`{self.what}` printed more than {sandbox.OUTPUT_CAP // 1024} KiB and was killed (an output loop?)"
        if self.killed_for:
            return f"`{self.what}` was killed by the grader: {self.killed_for}"
        if self.stopped:
            return f"`{self.what}` was still running {self.stopped}; the grader stopped it"
        if self.timed_out:
            where = f": it was {self.state.describe()}" if self.state else " (it had no process left to look at)"
            return f"`{self.what}` did not finish within {self.timeout:g} s and was killed{where}"
        if self.signal is not None:
            hint = SIGNAL_HINTS.get(self.signal, "")
            if "AddressSanitizer" in self.stderr:
                hint += "; AddressSanitizer's report is in its stderr, below"
            return f"`{self.what}` was killed by {signame(self.signal)}" + (f" ({hint})" if hint else "")
        return f"`{self.what}` exited with status {self.exitcode}"

    def explain(self, msg: str) -> str:
        parts = [msg, "  What happened: " + self.describe() + "."]
        if self.stdout.strip():
            parts.append("  Its output (last lines):\n" + _indent(tail(self.stdout)))
        if self.stderr.strip():
            parts.append("  Its stderr (last lines):\n" + _indent(tail(self.stderr)))
        if self.sigsafe:
            parts.append("  The async-signal-safety checker reported:\n" + _indent("\n".join(self.sigsafe)))
        return "\n".join(parts)

    def expect_exit(self, code: int, msg: str) -> None:
        if self.timed_out or self.flooded or self.killed_for or self.signal is not None or self.exitcode != code:
            pytest.fail(self.explain(msg), pytrace=False)

    def expect_signal(self, sig: int, msg: str) -> None:
        if self.signal != sig:
            pytest.fail(self.explain(msg), pytrace=False)

    def expect_sigsafe(self, msg: str) -> None:
        if self.sigsafe:
            pytest.fail(self.explain(msg), pytrace=False)


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())


class Proc:
    """A running program a test talks to: stdin, stdout, signals."""

    def __init__(self, build: "LabBuild", name: str, args: tuple[str, ...], contained: sandbox.Contained,
                 sigsafe_log: Path | None) -> None:
        self.build = build
        self.what = " ".join([name, *args])
        self.c = contained
        self.pid = contained.pid
        self._pos = 0  # stdout offset after the last expect() match
        self._signal_mark: int | None = None  # stdout bytes written before the first signal
        self._sigsafe_log = sigsafe_log
        build._procs.append(self)

    def send(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        if not self.c.send(data):
            out = self._finish(1.0)
            pytest.fail(out.explain(f"Could not write {data!r} to `{self.what}`: it no longer reads its input."),
                        pytrace=False)

    def close_stdin(self) -> None:
        self.c.close_stdin()

    def kill(self, sig: int, code: int | None = None) -> None:
        """Send sig (with `code`: a negative si_code, queued as sandbox.queue_signal does); fail the test if
        the program had already ended (its output before this moment does not count as a reaction: expect()
        and Outcome.after_signal look after it)."""
        mark = self.c.out.mark()
        if not self.c.signal(sig, code):
            out = self._finish(1.0)
            pytest.fail(out.explain(
                f"The grader was about to send {signame(sig)} to `{self.what}`, but it had already ended: "
                f"the program must keep running until the signal comes (whatever it printed before "
                f"the signal does not count as its reaction)."), pytrace=False)
        if self._signal_mark is None:
            self._signal_mark = mark
        with self.c.cond:
            self._pos = max(self._pos, len(clean_text(bytes(self.c.out.buf[:mark]))))

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait for `pattern` in stdout after the previous match; fail the test with the story if it never comes."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout * scale()
        with self.c.cond:
            while True:
                text = clean_text(bytes(self.c.out.buf))
                m = rx.search(text, self._pos)
                if m:
                    self._pos = m.end()
                    return m
                left = deadline - time.monotonic()
                if self.c.out.eof or left <= 0:
                    break
                self.c.cond.wait(min(left, 0.5))
        if self.c.out.eof:
            out = self._finish(1.0)
            pytest.fail(out.explain(f"Expected `{self.what}` to print a line matching /{pattern}/, but it stopped "
                                    f"printing."), pytrace=False)
        out = self._finish(0.0)  # it is stuck: look where, now, and stop it
        where = f" At that moment it was {out.state.describe()}." if out.state else ""
        out.stopped = "when the grader gave up waiting for that line"
        pytest.fail(out.explain(f"Expected `{self.what}` to print a line matching /{pattern}/, but nothing matched "
                                f"within {timeout:g} s.{where} The grader stopped it."), pytrace=False)

    def output(self) -> str:
        return clean_text(self.c.stdout_snapshot())

    def wait(self, timeout: float = 10.0, hang_ends: bool = False) -> Outcome:
        """Its end, or the timeout's.  hang_ends, for a program that makes no threads: seen asleep in
        futex() with no timeout, on the same word, using no CPU for 0.3 s, it has deadlocked on a lock it
        holds itself (no thread of its own can release it; AddressSanitizer's RSS watch is a thread that
        only sleeps in nanosleep()): it is stopped then (`stopped` says so, `state` where it was)."""
        if hang_ends:
            st = diagnose.futex_stall(self.pid, timeout * scale(), settle=0.3 * scale())
            if st is not None and diagnose.untimed_wait(st) and diagnose.others_only_sleep(self.pid):
                out = self._finish(0.0)
                if out.timed_out:  # still there: stopped by the grader, not by a timeout of its own
                    out.timed_out, out.state = False, st
                    out.stopped = (f"but {st.describe()}: with no thread of its own to release it and no "
                                   f"timeout it could never wake "
                                   f"(the same futex word, no CPU used, for {0.3 * scale():.1f} s)")
                return out
        return self._finish(timeout)

    def _finish(self, timeout: float) -> Outcome:
        timeout *= scale()
        ex = self.c.wait(timeout)
        after = ex.stdout[self._signal_mark:] if self._signal_mark is not None else b""
        return Outcome(
            what=self.what, exitcode=ex.exitcode, signal=ex.signal, timed_out=ex.timed_out, timeout=timeout,
            flooded=ex.flooded, stdout=clean_text(ex.stdout), stderr=clean_text(ex.stderr),
            sigsafe=_read_sigsafe(self._sigsafe_log), killed_for=ex.killed_for, after_signal=clean_text(after),
            state=ex.state, sigsafe_errno=_read_sigsafe(self._sigsafe_log, errno_findings=True),
        )


ERRNO_FINDING = "sigsafe: errno: "


def _read_sigsafe(path: Path | None, errno_findings: bool = False) -> list[str]:
    """The checker's findings (the calls, or with errno_findings the handlers that changed errno);
    the log is in the program's folder, so it is read as untrusted."""
    data = sandbox.read_untrusted(path, 65536) if path is not None else None
    if not data:
        return []
    return split_sigsafe(clean_text(data))[errno_findings]


def split_sigsafe(text: str) -> tuple[list[str], list[str]]:
    """The checker's log as (calls from handlers, handlers that changed errno), each sorted, no repeats."""
    lines = {ln.strip() for ln in text.splitlines() if ln.strip()}
    return (sorted(ln for ln in lines if not ln.startswith(ERRNO_FINDING)),
            sorted(ln for ln in lines if ln.startswith(ERRNO_FINDING)))


class BuildFailed(Exception):
    pass


# Compiler errors whose cause is always the same: (what the compiler says, what to do).
_BUILD_HINTS = [
    (re.compile(r"‘(F_SETSIG|F_GETSIG|F_SETOWN_EX|F_GETOWN_EX|F_OWNER_TID|sigabbrev_np)’ undeclared|"
                r"'(F_SETSIG|F_GETSIG|F_SETOWN_EX|F_GETOWN_EX|F_OWNER_TID|sigabbrev_np)' undeclared"),
     "F_SETSIG and its kin are GNU extensions: `#define _GNU_SOURCE` must come before the first #include "
     "(any header may include <features.h>, which reads it once)."),
]


def build_hint(stderr: str) -> str:
    """A line for a compiler error whose cause is known ("" if none)."""
    return next((f"\n  This error usually means: {why}" for rx, why in _BUILD_HINTS if rx.search(stderr)), "")


class LabBuild:
    """A lab of one submission, copied into scratch, built program by program on first use."""

    def __init__(self, spec: LabSpec, submission: Path, scratch: Path) -> None:
        self.spec = spec
        self.src = submission / spec.folder
        self.root = scratch / f"lab{spec.number:02d}"
        self.bin = self.root / "bin"
        self.runs = self.root / "runs"
        self.built: dict[str, Path | BuildFailed] = {}
        self._procs: list[Proc] = []
        self._run_no = 0

    # --- building ----------------------------------------------------------
    def _prepare(self) -> None:
        if self.root.exists():
            return
        if not self.src.is_dir():
            raise BuildFailed(f"the folder {self.spec.folder}/ is missing from the submission")
        shutil.copytree(self.src, self.root / "src", symlinks=True)
        self.bin.mkdir(parents=True)
        self.runs.mkdir()
        sandbox.make_writable(self.root)

    def program(self, name: str) -> Path:
        """The built executable, building it on first use; fails the test if it does not compile."""
        if name not in self.spec.programs:
            raise KeyError(f"lab {self.spec.number} has no program {name!r}")
        if name not in self.built:
            self.built[name] = self._compile(name)
        got = self.built[name]
        if isinstance(got, BuildFailed):
            pytest.fail(str(got), pytrace=False)
        return got

    def build_all(self) -> None:
        failures = []
        for name in self.spec.programs:
            if name not in self.built:
                self.built[name] = self._compile(name)
            got = self.built[name]
            if isinstance(got, BuildFailed):
                failures.append(str(got))
        if failures:
            pytest.fail("\n\n".join(failures), pytrace=False)

    def _compile(self, name: str) -> Path | BuildFailed:
        try:
            self._prepare()
        except BuildFailed as e:
            return e
        prog = self.spec.programs[name]
        missing = [s for s in prog.sources if not (self.root / "src" / s).is_file()]
        if missing:
            return BuildFailed(f"{self.spec.folder}/{missing[0]} is missing: the program `{name}` cannot be built.")
        out = self.bin / name
        argv = ["gcc", f"-std={prog.std}", *CFLAGS, *(SANITIZE if prog.sanitize else []), *prog.cflags,
                "-o", str(out), *prog.sources, *prog.ldflags]
        # The sandbox shows the compiler this lab's sources and its output folder, nothing else.
        c = sandbox.Contained(argv, cwd=self.root / "src", writable=[self.bin], env=_base_env(self.bin),
                              limits=Limits(cpu_seconds=60, processes=32, address_space=None), stdin=False,
                              readonly=[self.root / "src"])
        ex = c.wait(timeout=120.0)
        if ex.timed_out:
            return BuildFailed(f"Compiling `{name}` did not finish within 120 s.")
        if ex.killed_for or ex.flooded:
            why = ex.killed_for or f"it printed more than {sandbox.OUTPUT_CAP // 1024} KiB"
            return BuildFailed(f"Compiling `{name}` was stopped by the grader: {why}.")
        if ex.exitcode != 0 or not out.exists():
            errs = self._diagnostics(clean_text(ex.stdout) + clean_text(ex.stderr))
            return BuildFailed(f"`{name}` ({', '.join(prog.sources)}) does not compile with the grader's flags "
                               f"({' '.join(CFLAGS)}). The compiler's first errors:\n{_indent(errs)}"
                               + build_hint(clean_text(ex.stderr)))
        return out

    def _diagnostics(self, log: str) -> str:
        """The compiler's first diagnostics about this lab's files (diagnostics(): nothing else it printed)."""
        src = self.root / "src"
        own = sorted(p.name for p in src.iterdir() if p.suffix in (".c", ".h")) if src.is_dir() else []
        return diagnostics(log, own, folder=str(src), trusted=SYSTEM_HEADERS)

    # --- running -------------------------------------------------------------
    def _start(self, name: str, args: tuple[str, ...], env: dict[str, str] | None, preload: list[str],
               sigsafe: bool, stdin: bool, limits: Limits | None,
               blocked: tuple[int, ...] = ()) -> tuple[sandbox.Contained, Path | None]:
        exe = self.program(name)
        self._run_no += 1
        cwd = self.runs / f"{self._run_no:03d}-{name}"
        sandbox.make_writable(cwd)
        e = _base_env(cwd)
        prog = self.spec.programs[name]
        if prog.sanitize:
            e.update(SANITIZER_ENV)
        libs = [str(harness_library(p)) for p in preload]
        log: Path | None = None
        checker = sigsafe_library() if sigsafe else None
        if checker is not None:
            libs.insert(0, str(checker))
            log = cwd / ".sigsafe.log"
            e["SIGSAFE_LOG"] = str(log)
        if libs:
            e["LD_PRELOAD"] = " ".join(libs)
        e.update(env or {})
        lim = limits or Limits(address_space=None if prog.sanitize else 2 << 30)
        c = sandbox.Contained([str(exe), *args], cwd=cwd, writable=[cwd], env=e, limits=lim, stdin=stdin,
                              readonly=[self.bin, _libs()], blocked=blocked)
        return c, log

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None, preload: list[str] | None = None,
              sigsafe: bool = True, limits: Limits | None = None, blocked: tuple[int, ...] = ()) -> Proc:
        """Start a program; `blocked`: signals it starts with blocked, as if its parent had blocked them."""
        c, log = self._start(name, args, env, preload or [], sigsafe, True, limits, blocked)
        return Proc(self, name, args, c, log)

    def run(self, name: str, *args: str, input: str | bytes = b"", timeout: float = 10.0,
            env: dict[str, str] | None = None, preload: list[str] | None = None, sigsafe: bool = True,
            limits: Limits | None = None) -> Outcome:
        c, log = self._start(name, args, env, preload or [], sigsafe, True, limits)
        p = Proc(self, name, args, c, log)
        data = input.encode() if isinstance(input, str) else input
        if data:
            c.send(data)
        c.close_stdin()
        return p.wait(timeout)

    def cleanup(self) -> None:
        for p in self._procs:
            p.c.kill_all()
        self._procs.clear()


def _base_env(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


SYSTEM_HEADERS = ("/usr/include/", "/usr/lib/gcc/")  # a diagnostic there is the compiler's, about the system


# --- trusted helper libraries, built once per grading run ----------------------
_libdir: Path | None = None


def set_library_dir(path: Path) -> None:
    global _libdir
    _libdir = path


def _libs() -> Path:
    global _libdir
    if _libdir is None:
        import tempfile
        _libdir = Path(tempfile.mkdtemp(prefix="gradelib-libs-"))
    _libdir.mkdir(parents=True, exist_ok=True)
    os.chmod(_libdir, 0o755)
    return _libdir


def built_once(name: str, sources: list[Path], flags: list[str], libs: tuple[str, ...] = (),
               folder: Path | None = None) -> Path:
    """`gcc FLAGS -o OUT SOURCES LIBS` for one of the grader's own programs or libraries, in the library
    folder (or `folder`), named by a digest of the command and the sources: in a folder shared by several
    gradings (GRADER_LIBS: cli.shared_libs()) each is built once, and a changed source is built anew."""
    h = hashlib.sha256("\0".join([*flags, *libs]).encode())
    for src in sources:
        h.update(src.read_bytes())
    stem, dot, ext = name.partition(".")
    out = (folder or _libs()) / f"{stem}-{h.hexdigest()[:16]}{dot}{ext}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}.{threading.get_ident()}")
    res = subprocess.run(["gcc", *flags, "-o", str(tmp), *map(str, sources), *libs], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"grader bug: cannot build {name}:\n{res.stderr[-2000:]}")
    os.chmod(tmp, 0o755)
    tmp.rename(out)  # atomic: a grading beside this one sees the whole file or none
    return out


def _build_shared(name: str, sources: list[Path], ldflags: list[str]) -> Path:
    return built_once(f"{name}.so", sources, ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror"],
                      tuple(ldflags))


def sigsafe_library() -> Path | None:
    """The async-signal-safety checker (grader/sigsafe), LD_PRELOADed into every run."""
    srcs = sorted((GRADER / "sigsafe").glob("*.c"))
    return _build_shared("libsigsafe", srcs, ["-ldl"]) if srcs else None


def harness_library(name: str) -> Path:
    src = GRADER / "harness" / f"{name}.c"
    if not src.is_file():
        raise RuntimeError(f"grader bug: no harness library {src}")
    return _build_shared(name, [src], ["-ldl"])
