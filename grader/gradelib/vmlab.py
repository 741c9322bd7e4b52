"""The VM side of the grader: a lab whose code runs in the workbook VM.

A test module declares

    LAB = VmLabSpec(3, "03-fasync-button", programs={"buttonwatch": Program(["buttonwatch.c"], sanitize=False)},
                    module="button_driver", helpers={"probe": PROBE_C})

and asks for the `vm` fixture.  The whole test module shares one boot:

1. before the first test, the student's module is built with kbuild (W=1)
   against the VM kernel's headers, inside the sandbox (a Kbuild file is a
   makefile: it could run anything); the board (driver/) and the grader's
   helper programs are built by the grader; the student's programs are built
   on the host like a host lab's (no sanitizers: the VM has no libasan), and
   the async-signal-safety checker (grader/sigsafe) goes along to be
   LD_PRELOADed into them;
2. the VM boots with all of it in /lab, and wb_board.ko is loaded;
3. every test gets a `VmLab` whose helpers run commands with timeouts that
   name what was stuck, start programs in the background with their output in
   a file, wait for a line of that output (a short loop in the guest, not host
   sleeps), and press the button.

The kernel's witness (gradelib/witness.py) records every test's signals; a
failing test's message shows the record of the processes it started, and
report.txt its timeline.  A lab may grade its program tasks against an
earlier lab's driver (VmLabSpec.reference, loaded with use_driver()).

Failures that end the lab: the module does not build (every test fails with
the compiler's first errors), the VM does not boot, the kernel oopses or the
VM dies.  After an Oops every later test of the lab fails at once with the
excerpt ("the kernel oopsed in an earlier test; excerpt: ..."), and the
grader goes on with the other labs.  A WARNING fails the test during which
it was printed (and the lab's kernel-log test) but not the rest.

QEMU is always killed: the fixture closes the Machine at the end of the
module, and Machine itself kills QEMU at exit and when this process dies.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from . import diagnose, kcontext, oopsmap, sandbox
from .lab import (GRADER, REPO, SIGNAL_HINTS, BuildFailed, split_sigsafe, LabBuild, LabSpec, _indent, built_once,
                  harness_library, sigsafe_library, signame, tail)
from .modcheck import check_imports
from .progress import note
from .timescale import after_boot, scale
from .sandbox import Limits, clean_text
from .witness import Witness

if str(REPO) not in sys.path:  # vm/ (the VM package) is at the top of the repository
    sys.path.append(str(REPO))

from vm.kmod import KmodError, ModuleBuild, build_as, build_board, build_module, kdir as kernel_headers  # noqa: E402
from vm.machine import CmdResult, CommandTimeout, Machine, VMError, find_oops  # noqa: E402

GUEST_LAB = "/lab"
GUEST_GRADER = "/lab/.grader"  # the grader's own programs and libraries: root's, read-only to students
RUNS = "/tmp/runs"  # background programs' output, pid and status files (root's)
CGROUPS = "/sys/fs/cgroup/wb"  # a cgroup (v2) per student program: killed whole, daemons included
SIGSAFE_END = "sigsafe-log: end"  # runas -s: the log's reader saw the last writer close the pipe
SIGSAFE_CLOSED = "sigsafe-log: closed while the program ran"  # ... while the program still ran
SIGSAFE_STARTED = "sigsafe-log: started"  # the checker's first line, when it found the pipe
GUEST_SRC = GRADER / "guest"  # the grader's guest programs, one .c file each
REFERENCES = GRADER / "reference"  # earlier labs' drivers, generated from their solutions
HELPER_CFLAGS = ["-O1", "-Wall", "-Wextra", "-Werror"]
STUDENT_UID = 1000  # runas.c: student programs run as this user in the VM
OUTPUT_LIMIT = 16 << 20  # runas.c: RLIMIT_FSIZE of a student program in the VM (its output file too)
# How long an insmod of the student's module may take (scaled): its init and probe have nothing to
# wait for.  One that does not return, or stops the kernel, ends the lab's use of the module at once.
INSMOD_TIMEOUT = 8.0
SHORT_WAIT = 0.5  # GuestProc.expect(): seconds (scaled) before it looks whether the program is asleep for good
MAX_RESTARTS = 6  # fresh VMs a lab may need after an Oops, a dead VM or a process stuck in the kernel
# After each test: every line of the board stopped, not bouncing, released, and its device plugged in
# (writes to the board's debugfs files by the shell's echo: no program to start per line).
BOARD_RESET = ("for d in /sys/kernel/debug/wb-board/line*; do echo stop > $d/ctl; echo 'bounce 0' > $d/ctl; "
               "echo release > $d/ctl; echo plug > $d/ctl; done 2>/dev/null; true")
# When a taint flag was gained outside a test's own commands (_check_taint)
RELOADED = ("After this test, while the grader reloaded your module for the next one (rmmod runs its remove() and "
            "exit, insmod its init and probe()),")
BETWEEN = "Between the end of the last test and the start of this one (your module's timer or work?),"
# The grader's files outside GUEST_GRADER that a test runs: the command that presses the button (the board is
# loaded once, at boot; /lab/button is a copy for the students' own use).
GRADER_FILES = ("/usr/bin/button",)
# Kernel taint flags (Documentation/admin-guide/tainted-kernels.rst) that mean trouble. Every run is
# tainted O and E by unsigned out-of-tree modules; these bits no exported function can clear.
TAINTS = {7: ("D", "the kernel oopsed or hit a BUG (taint D)"),
          9: ("W", "the kernel printed a WARNING (taint W)"),
          14: ("L", "a soft lockup: a CPU was stuck in the kernel for over 20 s (taint L)"),
          5: ("B", "the kernel found a bad page: memory corruption (taint B)")}


@dataclass
class VmLabSpec(LabSpec):
    """A lab graded in the VM.

    module:   the .ko the student's Kbuild makes (without .ko); "" for none
    helpers:  the grader's own guest programs, grader/guest/NAME.c, built with -Werror
    harness:  LD_PRELOAD libraries of grader/harness/ the tests may use in the VM
    devices:  device nodes the module makes, readable by the student's programs (as udev would)
    binds:    the board's platform devices the student's module must bind (its probe() must succeed)
    imports:  kernel functions this lab allows beyond its list in gradelib/modcheck.py (LAB_NEEDS: what
              the lab's driver needs; anything else is refused and the module is not loaded)
    board:    load the simulated button board (driver/wb_board.ko) after boot
    signals:  every test is about signals: a failure shows the kernel's record of each
              process even when the kernel sent it none
    reference: a folder of grader/reference/ (an earlier lab's driver): built as
              MODULE_ref.ko (button_driver_ref.ko for a lab with no module);
              use_driver("reference") loads it, so the lab's program tasks are
              graded against it rather than against the student's driver
    cmdline:  more kernel parameters for the lab's VM (lab 5: slub_debug=FZP, so that
              memory a driver uses after freeing it holds a poison that crashes at once)
    """

    module: str = ""
    helpers: tuple[str, ...] = ()
    harness: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    board: bool = True
    signals: bool = False
    reference: str = ""
    cmdline: str = ""

    @property
    def reference_module(self) -> str:
        # a lab with no driver of its own (lab 6) still names the reference after the button's driver
        return f"{self.module or 'button_driver'}_ref"


def quote(text: str) -> str:
    """What a program printed, for a message: each line behind the quote marker `    | `, never where the
    grader's or the kernel's own lines go (a program may print a line that looks like the witness's)."""
    return _indent(text) if text else "    | (nothing)"


# The checker's finding of a stdio output call in a handler (split_sigsafe's lines): the function, the signal.
STDIO_CALL = re.compile(r"sigsafe: (v?f?printf|f?puts|putc|putchar|fputc|fwrite)\(\) called from the handler for "
                        r"(SIG\w+)")


class GuestProc:
    """A program running in the background in the VM, its output in a file."""

    def __init__(self, vm: "VmLab", name: str, what: str, base: str, sigsafe_log: str | None,
                 helper: bool = False, pid: int = 0) -> None:
        self.vm = vm
        self.helper = helper  # the grader's own program, not the student's
        self.name = name
        self.what = what  # the command line, for messages
        self.base = base  # RUNS/N: .out, .pid, .status
        self.sigsafe_log = sigsafe_log
        self.pid = pid  # the program's pid in the VM (the witness records by pid)
        self.line = 0  # output lines consumed by expect()
        self.cwd = f"{base}.d"  # the student's program runs in this folder of its own
        self.cgroup = ""  # the student's program's cgroup (every process it makes), when the VM has cgroup2
        self.unchecked = ""  # when the checker was found missing from the running program (signal())
        self._ended = False  # the last wait for a line ended because the program had ended

    @property
    def out(self) -> str:
        return f"{self.base}.out"

    def output(self) -> str:
        r = self.vm.run(f"cat {self.out} 2>/dev/null", timeout=10, what=f"reading the output of `{self.what}`")
        return clean_text(r.stdout.encode())

    def status(self) -> int | None:
        """The exit status (128+N for signal N) once it has ended, else None."""
        r = self.vm.run(f"cat {self.base}.status 2>/dev/null", timeout=10, what="reading an exit status")
        return int(r.stdout.strip()) if r.stdout.strip().isdigit() else None

    def state(self) -> diagnose.ProcState | None:
        """Where the program is now (None when it has ended)."""
        r = self.vm.run(f"p=$(cat {self.base}.pid); {diagnose.GUEST_SCRIPT}", timeout=10,
                        what=f"reading the state of `{self.what}`")
        return diagnose.parse_guest(r.stdout)

    def describe(self, status: int | None) -> str:
        if status is None:
            st = self.state()
            return f"`{self.what}` is still running" + (f": it is {st.describe()}" if st else "")
        if status > 128:
            sig = status - 128
            hint = SIGNAL_HINTS.get(sig, "")
            if sig == signal.SIGXFSZ:
                hint = (f"it wrote more than {OUTPUT_LIMIT >> 20} MB, the limit on a program's output and files in the "
                        "VM: a loop that prints without end?")
            if sig == signal.SIGIO and re.search(r"^event \d+", self.output(), re.M):
                hint = ("SIGIO's default action terminates the process; its handler had run before (it reported "
                        "events), so the handler was reset to SIG_DFL after one delivery: SA_RESETHAND, or signal() "
                        "with System V semantics; install it with sigaction() and no SA_RESETHAND")
            return f"`{self.what}` was killed by {signame(sig)}" + (f" ({hint})" if hint else "")
        return f"`{self.what}` exited with status {status}"

    def _sigsafe_log(self) -> tuple[list[str], list[str], str]:
        """The checker's log: (calls, errno findings, why the checker cannot be trusted in this run or "").
        The log comes through a pipe to a process of root's (runas -s), which says when the program closed
        it while it ran; the checker says it started. Once the program has ended, the log is read when its
        reader has seen the end (a second at most: a daemon may hold the pipe)."""
        if not self.sigsafe_log:
            return [], [], ""
        wait = (f"i=0; while [ $i -lt 100 ] && ! grep -q '^{SIGSAFE_END}$' {self.sigsafe_log}; do usleep 10000; "
                f"i=$((i+1)); done; " if self.status() is not None else "")
        r = self.vm.run(f"{wait}cat {self.sigsafe_log} 2>/dev/null", timeout=10, what="reading the sigsafe log")
        text = clean_text(r.stdout.encode())
        lines = text.splitlines()
        calls, errnos = split_sigsafe("\n".join(ln for ln in lines if not ln.startswith("sigsafe-log: ")))
        why = ""
        if SIGSAFE_CLOSED in lines:
            why = ("the program closed the checker's log while it ran (it closed a descriptor it did not open, or "
                   "exec'd a program)")
        elif self.unchecked:
            why = f"the checker's library was no longer loaded in the program {self.unchecked}"
        elif SIGSAFE_STARTED not in lines:
            why = "the checker never said it had started in the program"
        return calls, errnos, why

    def sigsafe(self, errno_findings: bool = False) -> list[str]:
        """The checker's calls from handlers to unsafe functions (or the handlers that changed errno).  A run the
        checker could not watch to its end fails the test: it was switched off, and its silence means nothing."""
        calls, errnos, why = self._sigsafe_log()
        if why:
            self.vm.fail(self.explain(f"The async-signal-safety checker did not watch `{self.what}` to its end: "
                                      f"{why}. Its silence proves nothing, so this test fails. A program must "
                                      "leave the descriptors it did not open alone, and not exec."))
        return errnos if errno_findings else calls

    def held_in_stdio(self, sig: str, line: str, shown: str, fix: str) -> str:
        """Why the program's lines (`line`, a regex; `shown`, how one looks) do not come out, when its real
        state shows that they wait in stdio's buffer: the checker saw its `sig` handler call printf() (or
        another stdio output function), the kernel delivered `sig` to it, it is alive and asleep, and its
        output has no such line. `fix`: how the lab's program prints instead. "" otherwise."""
        calls = [m.group(1) for m in map(STDIO_CALL.search, self.sigsafe()) if m and m.group(2) == sig]
        if not calls:
            return ""
        st = self.state()
        if st is None or st.state != "S" or re.search(line, self.output(), re.M):
            return ""
        rec = self.vm.witness.record([self.pid]) if self.vm.witness else None
        taken = rec.count(self.pid, sig).taken if rec else 0
        if not taken:
            return ""
        name = self.what.split()[0]
        return (f"{name} calls {calls[0]}() in the {sig} handler: its lines wait in stdio's buffer, and nothing "
                "reaches the output until exit.\n"
                f"  The kernel delivered {sig} to {name} {taken} time(s); {name} is {st.describe()}; its output "
                f"has no `{shown}` line. Its stdout is a file here, not a terminal, so stdio flushes it only when "
                "the buffer is full or at exit (and stdio is not async-signal-safe: a handler that interrupts a "
                f"printf() in main can corrupt its buffer). {fix}")

    def explain(self, msg: str) -> str:
        """msg, then what the program did: how it ended, its output, the checker's findings."""
        parts = [msg]
        try:
            st = self.status()
            parts.append("  What happened: " + self.describe(st) + ".")
            text = self.output()
            if text.strip():
                parts.append(f"  Its output (last lines):\n{_indent(tail(text))}")
            else:
                parts.append("  It printed nothing.")
            found, _, _ = self._sigsafe_log()
            if found:
                parts.append("  The async-signal-safety checker reported:\n" + _indent("\n".join(found)))
        except pytest.fail.Exception:
            pass
        return "\n".join(parts)

    def asleep_for_good(self) -> str:
        """Every thread of the program (of each of its processes, by its cgroup) asleep with nothing but
        another event to end the sleep (diagnose.untimed_wait): the calls they sleep in ("pause()").
        "" when one of them runs, waits with a timeout or for a child, or when it cannot be read."""
        where = f"cat {self.cgroup}/cgroup.threads 2>/dev/null || " if self.cgroup else ""
        r = self.vm.run(f"for t in $({where}ls /proc/{self.pid}/task 2>/dev/null); do echo \"--thread $t\"; "
                        f"grep -E '^(State|SigPnd|ShdPnd|SigBlk):' /proc/$t/status 2>/dev/null; echo --syscall; "
                        f"cat /proc/$t/syscall 2>/dev/null; done; true", timeout=10,
                        what=f"reading the state of `{self.what}`")
        calls = []
        for block in r.stdout.split("--thread ")[1:]:
            status, _, syscall = block.partition("--syscall\n")
            call = diagnose.untimed_wait(diagnose.parse(status, syscall=syscall))
            if not call:
                return ""
            calls.append(call)
        return ", ".join(sorted(set(calls)))

    def expect(self, pattern: str, timeout: float = 5.0, msg: str = "", fail: bool = True,
               asleep_ends: bool = True) -> str:
        """Wait for a line matching the (extended) regular expression after the last match; return it
        (with fail=False: "" when none came, and the test goes on).

        asleep_ends (the default): after SHORT_WAIT (scaled) with no such line, a program whose every thread
        sleeps with no timeout (asleep_for_good()) is not waited for any longer: nothing but the grader's next
        event would wake it, and a starter or a stuck program costs one short wait, not the whole timeout.
        Every event a test makes has happened when its command returns (`button` waits for the board's edges,
        and the interrupt handler runs in them); a signal on its way is pending, which is not asleep; a
        driver's own timer (lab 4's debounce) fires within milliseconds.  A line that comes from a timer the
        program set (a timed wait) is not cut short: such a wait is not asleep for good.  The same holds for
        the grader's helpers: one asleep in sigwaitinfo() for a signal that did not come waits no longer."""
        left, asleep = timeout, ""
        if asleep_ends and timeout > SHORT_WAIT and self.pid:
            line = self._expect(pattern, SHORT_WAIT)
            if line is not None:
                return line
            asleep = "" if self._ended else self.asleep_for_good()
            # asleep: one short look for what it printed before it fell asleep; ended: nothing more to wait for
            left = 0.5 if asleep else 0.0 if self._ended else timeout - SHORT_WAIT
        line = self._expect(pattern, left) if left > 0 else None
        if line is not None:
            return line
        if not fail:
            return ""
        if asleep:
            reason = (f"nothing matched within {SHORT_WAIT * scale():.1f} s, and then it was asleep in {asleep} with "
                      f"no timeout: nothing but another event would wake it")
        else:
            reason = "it ended" if self._ended else f"nothing matched within {timeout * scale():.1f} s"
        head = msg + "\n  " if msg else ""
        self.vm.fail(self.explain(f"{head}Expected `{self.what}` to print a line matching /{pattern}/, but {reason}."))
        raise AssertionError("unreachable")

    def _expect(self, pattern: str, timeout: float) -> str | None:
        """The next line matching `pattern` within `timeout` (scaled) seconds, or None (self._ended: the
        program ended without printing one)."""
        timeout *= scale()
        pat = shlex.quote(pattern)
        # grader/guest/waitline.c sleeps on inotify until the file grows or the program ends (exit 3); the
        # agent kills it at the timeout.  (A loop of tail and grep cost the guest's one CPU about 10 ms a
        # look under TCG, CPU that the program and the other VMs of the machine need.)
        script = f"{GUEST_GRADER}/waitline {self.out} {self.line + 1} {pat} {self.base}.status"
        r = self.vm.run(script, timeout=timeout, what=f"waiting for the output of `{self.what}`", allow_timeout=True)
        if r.status == 2:
            self.vm.fail(f"The grader could not wait for the output of `{self.what}` (a grader problem, not your "
                         f"code): {r.stderr.strip()[:300]}")
        self._ended = r.status == 3
        if r.status == 0 and ":" in r.stdout:
            no, _, text = r.stdout.strip().partition(":")
            self.line += int(no)
            return text
        return None

    def signal(self, sig: str) -> None:
        """Send SIG (a name: "INT", "USR1") to the program, which must still be running: a process
        that has ended ignores signals silently, so the output it printed before this moment does
        not count as its reaction (expect() looks after it)."""
        # With the checker: is it still loaded (a program that exec'd itself without it is not watched)?
        mapped = (f"grep -q ' {GUEST_GRADER}/libsigsafe.so$' /proc/$p/maps || echo unchecked; "
                  if self.sigsafe_log else "")
        r = self.vm.run(
            f"p=$(cat {self.base}.pid); st=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -c1); "
            f"if [ -e {self.base}.status ] || [ -z \"$st\" ] || [ \"$st\" = Z ]; then exit 3; fi; {mapped}"
            f"n=$(wc -l < {self.out}); kill -{sig} $p && echo $n", timeout=10, what=f"kill -{sig}")
        out = r.stdout
        if r.status == 0 and out.startswith("unchecked\n"):
            self.unchecked = self.unchecked or f"when the grader sent SIG{sig}"
            out = out[len("unchecked\n"):]
        if r.status == 3 or not out.strip().isdigit():
            if self.helper:
                self.vm.fail(self.explain(f"The grader's `{self.what}` had ended before it could be sent SIG{sig}: "
                                          "what it printed says why."))
            self.vm.fail(self.explain(
                f"The grader was about to send SIG{sig} to `{self.what}`, but it had already ended: the program "
                f"must keep running until the signal comes (whatever it printed before the signal does not count "
                f"as its reaction)."))
        self.line = max(self.line, int(out.strip()))

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        """Wait for the program to end; its status (128+N: signal N), or None if it is still running."""
        timeout *= scale()
        script = f"while [ ! -e {self.base}.status ]; do usleep 10000; done; cat {self.base}.status"
        r = self.vm.run(script, timeout=timeout, what=f"waiting for `{self.what}` to end", allow_timeout=True)
        return int(r.stdout.strip()) if r.status == 0 and r.stdout.strip().isdigit() else None

    def kill(self) -> None:
        self.vm.m.run(f"kill -KILL $(cat {self.base}.pid) 2>/dev/null; true", timeout=10)

    def open_files(self) -> dict[str, int]:
        """{path: open flags} of the program's descriptors (its /proc fd and fdinfo), as root sees them."""
        r = self.vm.run(f"p=$(cat {self.base}.pid); for f in /proc/$p/fd/*; do "
                        f"echo \"$(readlink $f) $(grep ^flags: /proc/$p/fdinfo/${{f##*/}} | tr -dc 0-7)\"; done",
                        timeout=10, what=f"reading the open files of `{self.what}`")
        files = {}
        for line in r.stdout.splitlines():
            path, _, flags = line.rpartition(" ")
            if path and flags.isdigit():
                files[path] = int(flags, 8)
        return files

    def fds(self) -> dict[int, str]:
        """{fd: what it is open on} (the targets of /proc/PID/fd/*, as root sees them)."""
        r = self.vm.run(f"p=$(cat {self.base}.pid); for f in /proc/$p/fd/*; do echo \"${{f##*/}} $(readlink $f)\"; done",
                        timeout=10, what=f"reading the descriptors of `{self.what}`")
        found = {}
        for line in r.stdout.splitlines():
            fd, _, path = line.partition(" ")
            if fd.isdigit() and path:
                found[int(fd)] = path
        return found

    def caught(self) -> int:
        """The mask of signals the program has a handler for (SigCgt in /proc/PID/status)."""
        st = self.state()
        return st.caught if st else 0


def build_reference(folder: str, module: str, out: Path) -> Path:
    """grader/reference/FOLDER as MODULE.ko (the grader's own code: built outside the sandbox), in `out`,
    which student code cannot read (the solution's sources are copied there): the Gradescope archive
    builds it at setup (gradelib/autograder.py), so a grading takes it from the cache."""
    if not (REFERENCES / folder).is_dir():
        raise KmodError(f"the grader's reference driver grader/reference/{folder} is missing "
                        "(it is part of the grader, in every edition that has this lab): restore it with "
                        "`git checkout -- grader/reference`")
    return build_as(REFERENCES / folder, out, module)


def build_helper(name: str, out: Path | None = None) -> Path:
    """The grader's guest program grader/guest/NAME.c, built for the VM (in the library folder, once for the
    gradings that share it: lab.built_once; or in `out`)."""
    src = GUEST_SRC / f"{name}.c"
    try:
        return built_once(name, [src], HELPER_CFLAGS, folder=out)
    except RuntimeError as e:
        raise RuntimeError(f"grader bug: the helper {name} does not build: {e}") from None


@contextmanager
def reference_vm(reference: str, module: str = "button_driver_ref", helpers: tuple[str, ...] = ()) -> Iterator[Machine]:
    """A VM as a graded lab that uses an earlier lab's driver gets it (the same builds, files and paths),
    without a student: the board loaded, grader/reference/REFERENCE's driver built and loaded as MODULE,
    and the grader's guest programs `helpers` in GUEST_GRADER.  For the figures (tools/plots), which
    measure the reference driver."""
    with tempfile.TemporaryDirectory(prefix="refvm-") as tmp:
        note("building the board and the reference driver ...")
        board = build_board(say=note)
        files: dict[str, Path] = {f"{GUEST_LAB}/wb_board.ko": board["wb_board.ko"],
                                  f"{GUEST_LAB}/button": board["button"], "/usr/bin/button": board["button"],
                                  f"{GUEST_GRADER}/{module}.ko": build_reference(reference, module, Path(tmp) / "ref")}
        for name in helpers:
            files[f"{GUEST_GRADER}/{name}"] = build_helper(name, Path(tmp) / "helpers")
        note("booting the VM (Debian's kernel in QEMU) ...")
        with Machine(files=files, boot_timeout=60.0) as m:
            m.check(f"insmod {GUEST_LAB}/wb_board.ko && insmod {GUEST_GRADER}/{module}.ko")
            yield m


class VmLab:
    """One lab in one VM: what the tests use."""

    def __init__(self, spec: VmLabSpec, build: LabBuild) -> None:
        self.spec = spec
        self.build = build
        self.m: Machine | None = None
        self.kbuild: ModuleBuild | None = None
        self.programs: dict[str, Path | BuildFailed] = {}
        self.broken: str | None = None  # why the rest of the lab cannot run
        self.test_name = ""
        self.boot_seconds: float | None = None
        self._seen = 0  # console characters already checked for an Oops
        self.warnings: list[str] = []  # WARNING excerpts seen so far
        self._procs: list[GuestProc] = []
        self._runs = 0
        self.has_sigsafe = False
        self.refusal = ""  # why the student's module was not loaded (its imports: gradelib/modcheck.py)
        self.imports: list[str] = []  # every kernel function the student's module imports (nm -u)
        self.hint = ""  # what the test is doing, for a message if the VM stops or a command hangs
        self.restarts = 0
        self._kcontext_ready = False
        self._kcontext_base = 0
        self._kcontext_filter = ""  # the hist triggers' filter now in place
        self.reload_failed = ""  # why the module could not be reloaded after the last test
        self.no_reload = ""  # why the module is no longer reloaded between tests (it did not survive it)
        self._loads = 0  # insmods of the student's module in this VM
        self.troubles: list[str] = []  # every Oops, WARNING and taint of the lab, over all its boots: "test: what"
        self.restart_why = ""  # set: the next test boots a fresh VM first
        self.restart_counted = True  # the restart is one of MAX_RESTARTS (not when a test asked for it)
        self._files: dict[str, Path] = {}
        self._sums: dict[str, str] = {}  # the grader's own files in the VM -> their sha256, from the host's copy
        self._taint = 0  # the kernel's taint flags when the test began
        self.witness: Witness | None = None  # the kernel's record of signals, once the VM runs
        self.detail = ""  # the failed test's timeline, for report.txt
        self._driver: tuple[str, str] | None = None  # use_driver(): (module, parameters) loaded
        self._irq_base = 0  # the IRQ's count in /proc/interrupts when use_driver() loaded it
        self.module_error = ""  # the student's module did not build (a lab with a reference goes on)
        self._setup_for: Machine | None = None  # the VM _student_setup() prepared
        self._cgroups = False  # that VM has cgroup2 with cgroup.kill: each student program gets a cgroup
        self.outlived = ""  # the processes of this test's programs that outlived them (end() fails the test)

    # --- setting up --------------------------------------------------------
    def setup(self) -> None:
        try:
            self.build._prepare()
        except BuildFailed as e:
            self.broken = str(e)
            return
        root = self.build.root
        board: dict[str, object] = {}  # the board builds while the student's code does

        def make_board() -> None:
            try:
                if self.spec.board:
                    board["files"] = build_board(say=note)
                if self.spec.reference:
                    # in a folder of the grader's alone (0700), not in the lab's (the student's)
                    private = Path(tempfile.mkdtemp(prefix=f"lab{self.spec.number:02d}-", dir=root.parent))
                    board["reference"] = build_reference(self.spec.reference, self.spec.reference_module, private)
            except KmodError as e:
                board["error"] = str(e)

        t = threading.Thread(target=make_board, daemon=True)
        if self.spec.board or self.spec.reference:
            t.start()
        if self.spec.module:
            note(f"lab {self.spec.number}: building {self.spec.module}.ko with kbuild (W=1; an unchanged module "
                 f"is not built again) ...")
            self.kbuild = self._build_module(root / "src", root / "kmod")
        for name in self.spec.programs:
            self.programs[name] = self.build._compile(name)
        files: dict[str, Path] = {}
        for name in ("runas", "waitline", *self.spec.helpers):
            files[f"{GUEST_GRADER}/{name}"] = build_helper(name)
        for name in self.spec.harness:
            files[f"{GUEST_GRADER}/{name}.so"] = harness_library(name)
        lib = sigsafe_library()
        if lib is not None:
            files[f"{GUEST_GRADER}/libsigsafe.so"] = lib
            self.has_sigsafe = True
        if self.spec.board or self.spec.reference:
            t.join()
            if "error" in board:
                raise RuntimeError(f"the grader cannot run: {board['error']}")
        if self.spec.reference:
            files[f"{GUEST_GRADER}/{self.spec.reference_module}.ko"] = board["reference"]  # type: ignore[assignment]
        if self.spec.board:
            built: dict[str, Path] = board["files"]  # type: ignore[assignment]
            files[f"{GUEST_LAB}/wb_board.ko"] = built["wb_board.ko"]
            files[f"{GUEST_LAB}/button"] = built["button"]
            files["/usr/bin/button"] = built["button"]
        if self.kbuild is not None and not self.kbuild.ok:
            why = (f"{self.spec.folder}: the module does not build, so nothing of it can be tested. "
                   f"The compiler's first errors:\n{_indent(self.kbuild.summary(15))}")
            if not self.spec.reference:
                self.broken = why
                return
            self.module_error = why  # the program tasks go on, with the reference driver
        if self.kbuild is not None and self.kbuild.ok and self.spec.module in self.kbuild.kos:
            ko = self.kbuild.kos[self.spec.module]
            imports = check_imports(ko, self.spec.number, self.spec.imports)
            self.imports = imports.symbols
            if imports.error:
                raise RuntimeError(f"grader setup: {imports.error}")
            if not imports.ok:
                self.refusal = imports.refusal(self.spec.module)
            if not imports.ok and not self.spec.reference:
                self.broken = self.refusal
                return
            if not imports.ok:
                self.module_error = self.refusal
            else:
                files[f"{GUEST_LAB}/{self.spec.module}.ko"] = ko
        for name, got in self.programs.items():
            if isinstance(got, Path):
                files[f"{GUEST_LAB}/{name}"] = got
        self._files = files
        self._sums = {g: hashlib.sha256(h if isinstance(h, bytes) else Path(h).read_bytes()).hexdigest()
                      for g, h in files.items() if g.startswith(GUEST_GRADER + "/") or g in GRADER_FILES}
        self._boot()

    def _boot(self) -> None:
        """Start the VM with the lab's files, make the run folder and load the board."""
        self._kcontext_ready = False
        self._loads = 0
        self._kcontext_filter = ""
        note(f"lab {self.spec.number}: booting the VM (Debian's kernel in QEMU) ...")
        self.m = Machine(files=self._files, boot_timeout=60.0, cmdline=self.spec.cmdline)
        self._seen = 0
        try:
            self.m.start()
        except VMError as e:
            self.broken = f"the VM did not boot (a grader or setup problem, not your code): {e}"
            return
        self.boot_seconds = self.m.boot_seconds
        after_boot(self.boot_seconds or 0.0)
        if os.environ.get("GRADER_WITNESS", "1") != "0":  # 0: off, to measure what it costs (grader/bench.py)
            self.witness = Witness(self._quiet)
        r = self.m.run(f"mkdir -p {RUNS} && chmod 755 {RUNS} && chmod -R go-w {GUEST_LAB}", timeout=30)
        if not r.ok:
            self.broken = f"the VM's run folder could not be made (a grader problem): {r.stderr.strip()}"
            return
        if self.spec.board:
            r = self.m.run("insmod /lab/wb_board.ko", timeout=30)
            if not r.ok:
                self.broken = f"the button board did not load (a grader problem): {r.stderr.strip()}"
                return
        self._taint = self.taint()  # the baseline: from now on every new flag is some test's

    def _restart_later(self, why: str) -> None:
        """The VM cannot serve the next test as it is (an Oops, a dead VM, a process stuck in the
        kernel): the next test gets a freshly booted one, so its result is its own.  After
        MAX_RESTARTS restarts the rest of the lab fails with `why`."""
        self.restart_counted = True
        if self.restarts >= MAX_RESTARTS:
            self.broken = f"{why}\n  (The VM was restarted {self.restarts} times in this lab already; the rest of " \
                          f"the lab cannot run.)"
        else:
            self.restart_why = why

    def fresh_vm_next(self, why: str) -> None:
        """Leave this VM as it is (its programs are not killed, its files not closed) and boot a fresh one
        for the next test: for a test that leaves files open on a device whose driver may crash when they
        are closed, which another test is about.  Not counted among the MAX_RESTARTS."""
        if not self.restart_why and not self.broken:
            self.restart_why = why
            self.restart_counted = False

    def _build_module(self, src: Path, out: Path) -> ModuleBuild:
        """kbuild W=1 in the sandbox: a Kbuild file is a makefile and may run anything."""
        try:
            k = kernel_headers()
        except KmodError as e:
            raise RuntimeError(f"grader setup: {e}") from None
        closed = sandbox.closed_to_user(k)
        if closed is not None:  # make would only say `Permission denied` about a path
            name = sandbox.sandbox_user()[0]
            raise RuntimeError(
                f"grader setup: your module is built as the sandbox's user ({name}), which cannot reach the kernel "
                f"headers in {k}: it may not enter {closed} (mode {oct(os.stat(closed).st_mode & 0o777)}). Without "
                f"namespaces (the fallback) keep the repository in a folder every user may enter, not under /root "
                f"(README.md, On macOS or Windows).")

        def contained(argv: list[str], cwd: Path, timeout: float) -> tuple[int | None, str]:
            sandbox.make_writable(cwd)
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
            c = sandbox.Contained(argv, cwd=cwd, writable=[cwd], env=env, stdin=False,
                                  # only the headers (vm/cache/VERSION) and the module's own folder
                                  readonly=[k.parent],
                                  limits=Limits(cpu_seconds=240, processes=64, file_size=64 << 20,
                                                address_space=None))
            ex = c.wait(timeout=timeout)
            return (None if ex.timed_out else ex.exitcode), clean_text(ex.stdout) + clean_text(ex.stderr)

        return build_module(src, out, w1=True, module=self.spec.module, runner=contained, cache=True)

    def close(self) -> None:
        if self.m is not None:
            self.m.close(graceful=False)

    # --- per test ------------------------------------------------------------
    def begin(self, name: str) -> None:
        """Before a test: fail at once if the lab cannot go on."""
        self.test_name = name
        self.detail = ""
        if self.restart_why and not self.broken:
            self.restarts += self.restart_counted
            self.restart_why = ""
            if self.m is not None:
                self.m.close(graceful=False)
            self.warnings.clear()
            self._procs.clear()  # they were in the VM that is gone
            self._boot()
        if self.broken:
            pytest.fail(self.broken, pytrace=False)
        # A flag gained since the last test's end (the module's timer, a work item) is this test's: the
        # baseline carries over from the end of the last test, and is read afresh only at a boot.
        self._check_taint(BETWEEN)
        if self.witness is not None:
            self.witness.start()

    def end(self, failed: bool = False) -> None:
        """After a test: stop what it started, look for an Oops or a new taint flag it caused, and
        give the next test a clean device: the student's module is reloaded (a stale entry left on a
        list by this test must not crash the next one and be blamed on it)."""
        if self.broken or self.m is None or self.restart_why:
            return
        try:
            stuck = self._stop_programs()
            if self.spec.board:
                self.m.run(BOARD_RESET, timeout=15)
        except VMError as e:
            self._vm_failed(e)
            return
        self._scan()
        self._check_taint()
        if stuck:
            # This test's own result stands (unless it used a grader's file that changed); the next one gets
            # a fresh VM.
            self._check_helpers()
            self._restart_later(f"a program was stuck in the kernel after an earlier test ({self.test_name}) and "
                                f"could not be killed:\n{_indent(stuck)}\n  A read or poll that cannot be "
                                f"interrupted (wait_event_interruptible?) keeps the module busy.")
            return
        if self.spec.module and not self.no_reload and self.module_loaded(quiet=True):
            self.reload_module(failed)
            if not self.restart_why and not self.broken:
                self._check_taint(RELOADED)  # a WARN in remove(), exit, init or probe() is this test's
        if not self.restart_why and not self.broken:
            self._check_helpers()
        if self.outlived:
            why, self.outlived = self.outlived, ""
            pytest.fail(why[:1].upper() + why[1:], pytrace=False)

    def _stop_programs(self) -> str:
        """Kill what the test started and wait until it is gone: the grader's helpers by pid; the student's
        programs by cgroup (cgroup.kill: every process a program made, a double-forked daemon in a session
        of its own included) and, as a backstop, every process of the user `student`, so that the next test
        starts with none.  A process of a program that had ended, or in a session of its own, still running
        when the test ended, is noted in self.outlived (end() fails the test with it); what could not be
        killed is described (the return value)."""
        procs, self._procs = self._procs, []
        self.outlived = ""
        student = [p for p in procs if not p.helper]
        helpers = " ".join(f"$(cat {p.base}.pid 2>/dev/null)" for p in procs if p.helper)
        if not procs:
            return ""
        # The programs still running, as CGROUP:SESSION: a process in the cgroup and session of one of them is
        # part of it; one in a session of its own (setsid) or left by a program that ended outlived the test.
        # (Without cgroup2 every process is in "/": the session alone tells.)
        alive = "".join(f"[ -e {p.base}.status ] || alive=\"$alive {p.cgroup[len('/sys/fs/cgroup'):] or '/'}:"
                        f"$(sid $(cat {p.base}.pid))\"; " for p in student)
        # Only shell builtins per process (a fork and exec costs milliseconds under TCG).  The user's processes
        # are looked for when the test started a program of the student's (the kernel formats every process's
        # status for the grep: 100 ms under TCG); with none, the earlier test's end left none, and a module
        # cannot start one (call_usermodehelper is refused: modcheck.py).
        users = (f"users() {{ for f in $(grep -l '^Uid:[[:space:]]*{STUDENT_UID}[[:space:]]' /proc/[0-9]*/status "
                 "2>/dev/null); do q=${f#/proc/}; q=${q%/status}; read -r l < /proc/$q/stat 2>/dev/null || continue; "
                 "s=${l##*) }; [ \"${s%% *}\" = Z ] || echo $q; done; }; " if student else "users() { :; }; ")
        users += "sid() { read -r l < /proc/$1/stat 2>/dev/null || return; s=${l##*) }; set -- $s; echo $4; }; "
        cgroups = " ".join(p.cgroup for p in student if p.cgroup)
        script = (
            f"{users}alive=''; {alive}"
            f"for q in $(users); do read -r cg < /proc/$q/cgroup 2>/dev/null; cg=${{cg#0::}}; "
            f"case \"$alive \" in *\" $cg:$(sid $q) \"*) continue;; esac; "
            f"read -r c < /proc/$q/comm 2>/dev/null; echo \"outlived $q $cg $c\"; done; "
            f"for g in {cgroups}; do echo 1 > $g/cgroup.kill; done 2>/dev/null; "
            f"pids=\"{helpers} $(users)\"; for p in $pids; do kill -KILL $p 2>/dev/null; done; i=0; "
            f"while [ $i -lt 100 ]; do left=''; for p in $pids; do "
            f"read -r l < /proc/$p/stat 2>/dev/null && s=${{l##*) }} && [ \"${{s%% *}}\" != Z ] && left=\"$left $p\"; "
            f"done; [ -z \"$left\" ] && break; usleep 20000; i=$((i+1)); done; "
            f"for g in {cgroups}; do rmdir $g 2>/dev/null; done; [ -z \"$left\" ] && exit 0; "
            f"for p in $left; do echo \"pid $p ($(cat /proc/$p/comm)) in $(cat /proc/$p/wchan): "
            f"$(head -n 3 /proc/$p/stack | tr '\\n' ' ')\"; done; exit 1")
        r = self.m.run(script, timeout=15)
        found = []
        by_cgroup = {p.cgroup[len("/sys/fs/cgroup"):]: p for p in student if p.cgroup}
        for line in r.stdout.splitlines():
            if not line.startswith("outlived "):
                continue
            _, pid, cg, *comm = line.split(" ")
            owner = by_cgroup.get(cg)
            whose = f"the program `{owner.what}`" if owner else "the user student (in no program's cgroup)"
            found.append((whose, f"pid {pid} ({clean_text(' '.join(comm).encode())[:32]})"))
        if found:
            self.outlived = (f"a process of {found[0][0]}, {found[0][1]}, outlived the test"
                             + (f" (and {len(found) - 1} more: " + "; ".join(f[1] for f in found[1:4]) + ")"
                                if len(found) > 1 else "")
                             + ": it was still running when the test ended, after the program had ended or in a "
                             "session of its own (a child not waited for, or a daemon: a double fork and setsid()). "
                             "The grader killed it, so the next test starts clean; a program's processes must end "
                             "with it.")
        stuck = "\n".join(ln for ln in r.stdout.splitlines() if ln.startswith("pid "))
        return "" if r.ok else (stuck or "a program did not die")

    @staticmethod
    def taint_names(value: int) -> list[str]:
        """What the troubling taint flags in `value` mean."""
        return [why for bit, (_, why) in sorted(TAINTS.items()) if value >> bit & 1]

    def taint(self) -> int:
        """The kernel's taint flags (/proc/sys/kernel/tainted)."""
        try:
            r = self.m.run("cat /proc/sys/kernel/tainted", timeout=10)
        except VMError as e:
            self._vm_failed(e)
            return 0
        return int(r.stdout.strip()) if r.stdout.strip().isdigit() else 0

    def _check_taint(self, when: str = "During this test") -> None:
        """Fail the test if the kernel gained a taint flag during it (or `when`), even when the log was
        hidden."""
        gained = self.taint() & ~self._taint
        bad = [(bit, flag, why) for bit, (flag, why) in sorted(TAINTS.items()) if gained >> bit & 1]
        if not bad:
            return
        self._taint |= gained
        what = "; ".join(why for _, _, why in bad)
        self.troubles.append(f"{self.test_name}: {what}" + ("" if when == "During this test" else f" ({when})"))
        shown = "\n".join(self.warnings[-1:]) if self.warnings else ""
        excerpt = (f" Excerpt:\n{_indent(self._ex(shown))}" if shown else
                   " The kernel's log shows nothing of it: the module lowered the console log level or "
                   "cleared the log, but the taint flags cannot be cleared.")
        if any(flag in "DLB" for _, flag, _ in bad):
            self._restart_later(f"during an earlier test ({self.test_name}): {what}.{excerpt}")
        pytest.fail(f"{when} {what}.{excerpt}", pytrace=False)

    def _check_helpers(self) -> None:
        """At the end of a test (after the module's reload): fail it when one of the grader's own files in
        the VM (its helpers, libraries, the reference driver, the button command) is no longer what the
        grader copied in.  One sha256sum for all, once per test: a test that ends with a changed file
        fails, so no test that used one can pass."""
        if not self._sums or self.m is None:
            return
        names = " ".join(shlex.quote(g) for g in sorted(self._sums))
        try:
            r = self.m.run(f"sha256sum {names} 2>&1; true", timeout=30 * scale())
        except VMError as e:
            self._vm_failed(e)
            return
        got = {}
        for line in r.stdout.splitlines():
            digest, _, path = line.partition("  ")
            got[path.strip()] = digest.strip()
        changed = [g for g, want in sorted(self._sums.items()) if got.get(g) != want]
        if not changed:
            return
        what = ", ".join(changed)
        self.troubles.append(f"{self.test_name}: the grader's {what} changed in the VM")
        # a fresh VM has them as the grader made them; this one cannot be trusted any more
        self._restart_later(f"the grader's own files in the VM ({what}) were changed in an earlier test "
                            f"({self.test_name})")
        pytest.fail(f"The grader's own {'file' if len(changed) == 1 else 'files'} in the VM changed during this "
                    f"test (or while the grader reloaded your module after it): "
                    f"{what} no longer {'has' if len(changed) == 1 else 'have'} the content the grader copied in "
                    f"(sha256). Only code running as root or in the kernel (your module) can write there, so this "
                    f"test's result cannot be trusted and it gets no points.", pytrace=False)

    # --- running commands ------------------------------------------------------
    def check_module_build(self) -> None:
        """The prerequisite of every lab with a module: it builds with kbuild, W=1, with no warnings."""
        b = self.kbuild
        if b is None:
            pytest.fail(self.broken or "the module was not built", pytrace=False)
        if not b.ok:
            pytest.fail(f"{self.spec.module}.ko does not build against the VM kernel's headers (`make` in "
                        f"labs/{self.spec.folder} builds it the same way, with W=1). The compiler's first errors:\n"
                        + "\n".join("    | " + ln for ln in b.summary(15).splitlines()), pytrace=False)
        if b.warnings:
            pytest.fail(f"{self.spec.module}.c builds, but with warnings (the grader builds with W=1, like `make`); "
                        "fix them:\n" + "\n".join("    | " + w for w in b.warnings[:10]), pytrace=False)

    def fail(self, msg: str, signals: bool = False) -> None:
        """Fail the test; the kernel's complaint, if it made one, goes with the message, and so does its
        record of the signals of the processes the test started (with signals=True, or in a lab about
        signals, also of those it sent none)."""
        self._scan()
        pytest.fail(msg + self._witnessed(signals), pytrace=False)

    def _witnessed(self, signals: bool) -> str:
        if self.witness is None:
            return ""
        names = {p.pid: f"`{p.what}`" for p in self._procs if p.pid}
        rec = self.witness.record(list(names), timeline=True)
        if rec is None:
            return ""
        block = rec.summary(names, show_empty=signals or self.spec.signals)
        if not block:
            return ""
        self.detail = rec.timeline
        return "\n" + block

    def _quiet(self, cmd: str, timeout: float) -> CmdResult:
        """A guest command whose failure is not the test's (the witness's)."""
        assert self.m is not None
        try:
            return self.m.run(cmd, timeout=timeout)
        except VMError as e:
            return CmdResult(status=None, signal=None, stdout="", stderr=str(e), timed_out=True, truncated=False)

    def run(self, cmd: str, timeout: float = 10.0, what: str = "", allow_timeout: bool = False):
        """Run a shell command in the VM; a timeout or a dead VM fails the test with a message naming `what`
        (with allow_timeout, a command killed at its timeout is a result with timed_out set)."""
        if self.broken:
            pytest.fail(self.broken, pytrace=False)
        assert self.m is not None
        timeout *= scale()
        try:
            r = self.m.run(cmd, timeout=timeout, allow_timeout=allow_timeout)
        except CommandTimeout:
            self._scan()
            hint = f"\n  While {self.hint}." if self.hint else ""
            pytest.fail(f"{what or 'a command'} did not finish within {timeout:g} s and was killed "
                        f"(stuck in your driver?): `{cmd.strip()[:120]}`{hint}", pytrace=False)
        except VMError as e:
            self._vm_failed(e)
        self._scan()
        return r

    def sh(self, cmd: str, timeout: float = 10.0, what: str = "") -> str:
        """Run a command that must succeed; its stdout."""
        r = self.run(cmd, timeout, what)
        if not r.ok:
            self.fail(f"{what or 'the command'} failed ({r.describe()}): `{cmd.strip()[:120]}`\n"
                      f"{_indent((r.stderr or r.stdout).strip()[-1200:] or '(no output)')}")
        return r.stdout

    def _ex(self, oops: str, lines: int = 16) -> str:
        """An Oops excerpt, with file:line for the frames in the student's module."""
        ko = self.kbuild.kos.get(self.spec.module) if self.kbuild is not None and self.spec.module else None
        return _excerpt(oops, lines, self.spec.module, ko)

    def _vm_failed(self, e: VMError) -> None:
        console = self.m.console() if self.m is not None else ""
        oops = find_oops(console[self._seen:]) or find_oops(console)
        detail = f"; excerpt:\n{_indent(self._ex(oops))}" if oops else f" ({e})"
        if oops and "NMI: Not continuing" in oops:
            detail = (" (the kernel stopped answering: a CPU looping with interrupts off, or waiting for a lock "
                      "that is never released; the grader interrupted it with an NMI, and RIP is where it was, "
                      f"the Call Trace how it got there):\n{_indent(self._ex(oops, 24))}")
        hint = f"\n  While {self.hint}." if self.hint else ""
        hint += known_cause(oops or "")
        self.troubles.append(f"{self.test_name}: the VM stopped" + (f": {self._ex(oops, 3)}" if oops else ""))
        self._restart_later(f"the VM stopped in an earlier test ({self.test_name}){detail}")
        pytest.fail(f"the VM stopped during this test{detail}{hint}", pytrace=False)

    def _scan(self) -> None:
        """Look at what the kernel printed since the last look."""
        if self.m is None:
            return
        console = self.m.console()
        new, self._seen = console[self._seen:], len(console)
        oops = find_oops(new)
        if oops is None:
            return
        first = oops.strip().splitlines()
        head = next((ln for ln in first if "cut here" not in ln), "")
        self.troubles.append(f"{self.test_name}: {self._ex(oops, 3)}")
        if re.search(r"\]\s*WARNING:|^WARNING:", head):
            self.warnings.append(oops)
            self._taint = self.taint()  # reported here: the taint check need not say it again
            pytest.fail(f"the kernel printed a WARNING during this test; excerpt:\n{_indent(self._ex(oops))}"
                        f"{known_cause(oops)}", pytrace=False)
        self._restart_later(f"the kernel oopsed in an earlier test ({self.test_name}); excerpt:\n"
                            f"{_indent(self._ex(oops))}")
        pytest.fail(f"the kernel oopsed during this test; excerpt:\n{_indent(self._ex(oops))}{known_cause(oops)}",
                    pytrace=False)

    # --- the lab's pieces -----------------------------------------------------------
    def module_loaded(self, quiet: bool = False) -> bool:
        cmd = f"grep -q '^{self.spec.module} ' /proc/modules"
        if quiet:
            assert self.m is not None
            return self.m.run(cmd, timeout=10).ok
        return self.run(cmd, timeout=10, what="lsmod").ok

    def _udev(self) -> str:
        """What udev would do on a real system: the device nodes readable by everyone."""
        nodes = " ".join(shlex.quote(d) for d in self.spec.devices)
        return f"; for d in {nodes}; do [ -e $d ] && chmod a+r $d; done; true" if nodes else ""

    def load_module(self, check: bool = True):
        """insmod the student's module unless it is loaded; the result of insmod (or None).  With check, a
        module that does not load, or loads but does not bind the board's devices (its probe() failed), fails
        the test, with the end of the kernel's log."""
        if self.module_loaded():
            if check:
                self._check_bound()
            return None
        r = self._insmod(f"insmod {GUEST_LAB}/{self.spec.module}.ko", f"insmod {self.spec.module}.ko")
        if check and not r.ok:
            log = self.run("dmesg | tail -n 8", timeout=10).stdout
            self.fail(f"`insmod {self.spec.module}.ko` failed: {(r.stderr or r.stdout).strip()}\n"
                      f"  The kernel log ends with:\n{_indent(log.strip())}")
        if r.ok and self.spec.devices:
            self.run(self._udev().lstrip("; "), timeout=10, what="making the device readable")
        self._loads += 1
        if r.ok and check and self._loads > 1 and not self._bound():
            # A module that bound in this VM before and does not now: an earlier instance left something behind
            # (its remove() did not undo probe()). The test gets a fresh VM; the module is not reloaded again.
            log = self.run("dmesg | tail -n 4", timeout=10).stdout.strip()
            self.no_reload = (f"loaded again after rmmod, {self.spec.module}.ko no longer binds the board's device "
                              f"(its remove() left something behind); the kernel log ended with:\n{_indent(log)}")
            self.restarts += 1
            self.m.close(graceful=False)
            self._boot()
            if self.broken:
                pytest.fail(self.broken, pytrace=False)
            return self.load_module(check)
        if r.ok and check:
            self._check_bound()
        return r

    def _insmod(self, cmd: str, what: str, after_test: bool = False) -> CmdResult | None:
        """Run an insmod of the student's module (cmd) with a short timeout.  A module whose init (or the
        probe() it triggers) does not return within it, or stops the kernel (a loop with interrupts off:
        the VM gets an NMI, which shows where it was), is not loaded again in this lab: the test fails
        with that (after_test, during the reload after a test: the next test does, and None is returned),
        the rest of a lab without a reference driver fails at once, and a lab with one goes on with it."""
        assert self.m is not None
        timeout = INSMOD_TIMEOUT * scale()
        try:
            r = self.m.run(cmd, timeout=timeout, allow_timeout=True)
            if not r.timed_out:
                return r
            detail = (f"`{what}` did not return within {timeout:g} s and could not be interrupted (its init or "
                      f"probe() waits for something that never comes, or loops)")
        except VMError as e:
            console = self.m.console()
            oops = find_oops(console[self._seen:]) or find_oops(console)
            self._seen = len(console)
            where = f"; where the CPU was:\n{_indent(self._ex(oops, 24))}" if oops else f" ({e})"
            detail = (f"the kernel stopped responding while `{what}` ran (a loop with interrupts off, or a wait "
                      f"for a lock that is never released; the grader interrupted it with an NMI){where}")
        why = f"{self.spec.module}.ko's init never returned: {detail}"
        self.troubles.append(f"{self.test_name}: {self.spec.module}.ko's init never returned")
        self._driver = None
        self.restart_why = self.restart_why or why  # the next test gets a fresh VM, without the module
        self.restart_counted = False
        if self.spec.reference:
            self.module_error = f"{why}\n  So the grader does not load it again in this lab."
        else:
            self.broken = f"{why}\n  So the grader does not load it again in this lab: the lab's tests cannot run."
        if after_test:
            return None
        pytest.fail(why, pytrace=False)

    def _bound(self) -> bool:
        return all(self.run(f"test -e /sys/bus/platform/devices/{d}/driver", timeout=10).ok for d in self.spec.binds)

    def _check_bound(self) -> None:
        """Fail the test when the student's module is loaded but did not bind a device it must bind."""
        for dev in self.spec.binds:
            link = self.run(f"readlink /sys/bus/platform/devices/{dev}/driver", timeout=10).stdout.strip()
            if not link:
                log = self.run("dmesg | tail -n 6", timeout=10).stdout
                self.fail(f"{self.spec.module}.ko is loaded, but the board's device {dev} is not bound to it: its "
                          f"probe() failed (or the driver's name is not \"{dev}\"). The kernel log ends with:\n"
                          f"{_indent(log.strip())}")

    def reload_module(self, after_failure: bool) -> None:
        """rmmod and insmod the student's module between tests (a clean device for the next one), with
        the parameters use_driver() gave it."""
        assert self.m is not None
        params = self._driver[1] if self._driver and self._driver[0] == self.spec.module else ""
        ko = f"{GUEST_LAB}/{self.spec.module}.ko {params}".rstrip()
        r = self.m.run(f"rmmod {self.spec.module}", timeout=30)
        if r.ok:
            r = self._insmod(f"insmod {ko}{self._udev()}", f"insmod {self.spec.module}.ko", after_test=True)
            if r is None:  # it hung: the next test boots a fresh VM and does not load the module
                return
        self._scan()
        self.reload_failed = "" if r.ok else f"`rmmod {self.spec.module}`: {(r.stderr or r.stdout).strip()[:160]}"
        if not r.ok:
            self._driver = None
        if not r.ok and after_failure:
            # The test failed already; the next test gets a module that is not loaded (it loads it).
            if self._insmod(f"insmod {ko}{self._udev()}", f"insmod {self.spec.module}.ko", after_test=True) is None:
                return
        unbound = [d for d in self.spec.binds
                   if r.ok and not self.m.run(f"test -e /sys/bus/platform/devices/{d}/driver", timeout=10).ok]
        if unbound:
            # Reloaded, the driver no longer binds (its remove() left something behind: a misc device, an IRQ):
            # the next test gets a fresh VM, and the module is not reloaded again in this lab.
            log = self.m.run("dmesg | tail -n 4", timeout=10).stdout.strip()
            self.no_reload = (f"after rmmod and insmod, {self.spec.module}.ko no longer binds {unbound[0]} (its "
                              f"probe() fails); the kernel log ends with:\n{_indent(log)}")
            self._restart_later(self.no_reload)

    def use_driver(self, which: str = "student", params: str = "") -> None:
        """Load the student's module ("student") or the lab's reference driver ("reference"), with
        insmod parameters, after unloading the other; nothing when it is loaded already so.
        (The two cannot be loaded together: both are the platform driver "wb-button".)"""
        if which == "student" and self.module_error:
            self.fail(self.module_error)
        name = self.spec.module if which == "student" else self.spec.reference_module
        ko = f"{GUEST_LAB}/{name}.ko" if which == "student" else f"{GUEST_GRADER}/{name}.ko"
        loaded = {ln.split()[0] for ln in self.run("cat /proc/modules", what="lsmod").stdout.splitlines() if ln}
        if self._driver == (name, params) and name in loaded:
            return
        self._driver = None
        for other in (self.spec.module, self.spec.reference_module):
            if other in loaded:
                r = self.run(f"rmmod {other}", timeout=20, what=f"rmmod {other}")
                if not r.ok:
                    self.fail(f"`rmmod {other}` failed before loading {name}.ko: {(r.stderr or r.stdout).strip()} "
                              "(a file of /dev/button still open? a module that cannot be unloaded?)")
        what = f"insmod {name}.ko {params}".strip()
        r = (self._insmod(f"insmod {ko} {params}{self._udev()}", what) if which == "student"
             else self.run(f"insmod {ko} {params}{self._udev()}", timeout=20, what=what))
        if not r.ok:
            log = self.run("dmesg | tail -n 6", timeout=10).stdout
            self.fail(f"`{what}` failed: {(r.stderr or r.stdout).strip()}\n"
                      f"  The kernel log ends with:\n{_indent(log.strip())}")
        self._driver = (name, params)
        self._irq_base = self.irq_count(name) or 0  # the count lives with the IRQ, across modules

    def irqs_since_load(self) -> int:
        """Interrupts the driver loaded by use_driver() has handled (for the reference driver: the seq of
        its last event, one per interrupt)."""
        name = self._driver[0] if self._driver else self.spec.module
        return (self.irq_count(name) or 0) - self._irq_base

    def spawn(self, name: str, *args: str, helper: bool = False, sigsafe: bool = True,
              preload: tuple[str, ...] | None = None, env: dict[str, str] | None = None,
              sigpending: int | None = None) -> GuestProc:
        """Start a program in the background; its output goes to RUNS/N.out.  The student's programs
        run as the user `student` (preload: harness libraries; env: more variables; sigpending: a
        lower RLIMIT_SIGPENDING); the grader's helpers (helper=True) as root."""
        if helper:
            exe = f"{GUEST_GRADER}/{name}"
        else:
            got = self.programs.get(name)
            if got is None:
                raise KeyError(f"lab {self.spec.number} has no program {name!r}")
            if isinstance(got, BuildFailed):
                pytest.fail(str(got), pytrace=False)
            exe = f"{GUEST_LAB}/{name}"
        self._runs += 1
        base = f"{RUNS}/{self._runs:03d}-{name}"
        log = None
        cgroup = ""
        if helper:  # the grader's own programs run as root, out of the student programs' reach
            argv = " ".join(shlex.quote(a) for a in (exe, *args))
            prep = ""
        else:  # the student's, as the unprivileged user `student`, in a folder of its own
            cgroups = self._student_setup()
            preload = [f"{GUEST_GRADER}/{h}.so" for h in preload or ()]
            envs = [f"{k}={v}" for k, v in (env or {}).items()]
            opts: list[str] = []
            if sigsafe and self.has_sigsafe:
                # The checker's log: a pipe on a descriptor it finds and hides, read by root (runas -s), not a
                # file the program could empty; it takes LD_PRELOAD out of the program's environment.
                log = f"{base}.sigsafe"
                preload.insert(0, f"{GUEST_GRADER}/libsigsafe.so")
                opts += ["-s", log]
            if preload:
                envs.append("LD_PRELOAD=" + " ".join(preload))
            opts += [a for e in envs for a in ("-e", e)]
            if sigpending is not None:
                opts += ["-l", f"sigpending={sigpending}"]
            if cgroups:
                cgroup = f"{CGROUPS}/{self._runs:03d}"
                opts += ["-c", cgroup]
            # As the student would start it: ./NAME, in the folder that holds it (a copy, root's).
            argv = " ".join(shlex.quote(a) for a in (f"{GUEST_GRADER}/runas", *opts, "-d", f"{base}.d",
                                                     "-a", f"./{name}", "--", f"{base}.d/{name}", *args))
            prep = (f"mkdir {base}.d && cp {exe} {base}.d/{name} && chmod 755 {base}.d/{name} && "
                    f"chown {STUDENT_UID}:{STUDENT_UID} {base}.d && "
                    + (f"mkdir {cgroup} && " if cgroup else ""))
        inner = shlex.quote(f"echo $$ > {base}.pid; exec {argv}")
        # The status file appears when the program ends (128+N when signal N killed it), whole: written
        # under another name and renamed, so a reader never finds it created but still empty.
        cmd = (f"{prep}( sh -c {inner} > {base}.out 2>&1 < /dev/null; echo $? > {base}.st; "
               f"mv {base}.st {base}.status ) "
               f">/dev/null 2>&1 </dev/null & "
               f"while [ ! -s {base}.pid ]; do usleep 5000; done; cat {base}.pid")
        what = " ".join([name, *args])
        r = self.run(cmd, timeout=10, what=f"starting `{what}`")
        if not r.ok or not r.stdout.strip().isdigit():
            self.fail(f"`{what}` could not be started in the VM")
        p = GuestProc(self, name, what, base, log, helper, int(r.stdout.strip()))
        p.cgroup = cgroup
        self._procs.append(p)
        return p

    def _student_setup(self) -> bool:
        """Once per boot, before the first student program: the cgroup2 hierarchy the programs run in (False
        when the kernel has none: then only the sweep by uid in _stop_programs() finds what they left), and
        the run folder closed to listing: they may pass through it to their own folder, but not list it
        (a file in it can still be read by its name)."""
        assert self.m is not None
        if self._setup_for is not self.m:
            r = self.m.run(f"chmod 711 {RUNS}; grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || "
                           f"mount -t cgroup2 cgroup2 /sys/fs/cgroup && mkdir -p {CGROUPS} && "
                           f"test -e {CGROUPS}/cgroup.kill", timeout=10)
            self._setup_for = self.m
            self._cgroups = r.ok
        return self._cgroups

    def button(self, action: str, timeout: float = 10.0) -> None:
        """`button ACTION` (press, release, click, burst N US): returns when the interrupts were delivered."""
        self.sh(f"button {action}", timeout=timeout,
                what=f"`button {action}` (it returns once your interrupt handler has run)")

    def irq_number(self, module: str = "") -> int | None:
        """The IRQ number of the student's module (or of `module`) in /proc/interrupts, or None."""
        out = self.run("cat /proc/interrupts", timeout=10).stdout
        for line in out.splitlines():
            if line.rstrip().endswith(" " + (module or self.spec.module)):
                m = re.match(r"^\s*(\d+):", line)
                return int(m.group(1)) if m else None
        return None

    # --- the kernel's view of the driver's contexts (gradelib/kcontext.py) ------------------------
    def kcontext_start(self) -> None:
        """From now on, count the locks, sleeps and allocations the student's module makes, by context."""
        if not self._kcontext_ready:
            self.run(kcontext.setup_script(), timeout=60, what="setting up the kernel's context probes")
            self._kcontext_ready = True
        m = re.search(rf"^{self.spec.module} (\d+) .* (0x[0-9a-f]+)", self.run("cat /proc/modules", timeout=10).stdout,
                      re.M)
        if not m:
            self.fail(f"{self.spec.module} is not loaded, so its calls cannot be watched.")
        self._kcontext_base = int(m.group(2), 16)
        lo, hi = self._kcontext_base, self._kcontext_base + int(m.group(1))
        self.run(kcontext.start_script(lo, hi, self._kcontext_filter), timeout=60,
                 what="starting the kernel's context probes")
        self._kcontext_filter = kcontext.filter_for(lo, hi)

    def kcontext_calls(self) -> list[kcontext.Call]:
        """What the module has called since kcontext_start(), counted by context."""
        return kcontext.parse(self.run(kcontext.read_script(), timeout=60, what="reading the context probes").stdout)

    def kcontext_findings(self, calls: list[kcontext.Call]) -> kcontext.Findings:
        """The rules of kcontext.analyse(), with the module's functions named."""
        text = self.run(f"cat /sys/module/{self.spec.module}/sections/.text", timeout=10).stdout.strip()
        ko = self.kbuild.kos.get(self.spec.module) if self.kbuild is not None else None
        where = (kcontext.symbolizer(ko, int(text, 16)) if ko is not None and text.startswith("0x")
                 else (lambda a: f"the code at {a:#x}"))
        return kcontext.analyse(calls, where)

    def kcontext_stop(self) -> None:
        self.run(kcontext.stop_script(), timeout=30, what="stopping the context probes")

    def module_symbols(self, module: str = "") -> dict[int, str]:
        """The student's module's (or `module`'s) symbols while it is loaded: {address: name}, from
        /proc/kallsyms (a trace read after rmmod shows addresses the kernel can no longer name)."""
        name = module or self.spec.module
        out = self.sh(f"grep '\\[{name}\\]' /proc/kallsyms", what=f"reading {name}'s symbols")
        return {int(f[0], 16): f[2] for f in (ln.split() for ln in out.splitlines()) if len(f) >= 3}

    def irq_count(self, module: str = "") -> int | None:
        """Interrupts of the student's module (or of `module`) in /proc/interrupts, or None when it has
        no IRQ."""
        out = self.run("cat /proc/interrupts", timeout=10).stdout
        for line in out.splitlines():
            if line.rstrip().endswith(" " + (module or self.spec.module)):
                nums = re.findall(r"^\s*\d+:\s+(\d+)", line)
                return int(nums[0]) if nums else 0
        return None


_REGISTERS = re.compile(r"^(Code:|RSP:|RAX:|RDX:|RBP:|R\d+:|FS:|CS:|CR2:|DR\d|PKRU|PGD |#PF:|Hardware name:)")


# Kernel BUGs whose cause is always the same mistake of a driver: (what the Oops shows, what to fix).
KNOWN_CAUSES = [
    (re.compile(r"kernel BUG at fs/fcntl\.c.*|send_sigio_to_task", re.S),
     "kill_fasync()'s last argument (the band) must be a POLL_* code such as POLL_IN (1 to 6): a poll(2) bit "
     "such as POLLRDNORM (0x40) hits the BUG_ON() in send_sigio_to_task() as soon as an owner uses F_SETSIG."),
    (re.compile(r"list_(add|del) corruption"),
     "a list was corrupted: a node added twice, or removed twice (release() after remove()?), or freed while "
     "still on a list; add and remove under the same lock the interrupt handler takes."),
    (re.compile(r"refcount_t: (addition on 0|underflow|saturated)|refcount_warn_saturate"),
     "a reference count (a kref) went wrong: `addition on 0` is a kref_get() on a count already at 0 (no "
     "kref_init() when the state was allocated, or the state already released), `underflow` one kref_put() "
     "too many. kref_init() the count when you allocate the state (that is the device's reference), "
     "kref_get() in open(), and exactly one kref_put() for each: in release(), and for the device's own once "
     "it is gone."),
    (re.compile(r"devres_release_all"),
     "the Oops is in devres_release_all(), which undoes the driver's devm_ resources and actions after "
     "remove() has returned: one of them (a timer, the IRQ, an action of yours) crashed, most often on state "
     "that was already freed, for instance by a kref_put() at the end of remove(). If so, drop the "
     "device's reference in a devm action added before the other devm_ resources instead: devm undoes "
     "them in reverse order, so that action runs last."),
    (re.compile(r"6b6b6b6b6b6b6b6b|Poison overwritten|Object already free"),
     "the driver used memory after it was freed: in this lab's VM the kernel fills freed memory with 0x6b "
     "(slub_debug), so a pointer read from it crashes at once. A file still open after remove() must keep the "
     "device's state alive: kzalloc() it (not devm), count references with a kref (one for the device, "
     "dropped when it goes; one per open file: kref_get() in open(), kref_put() in release()) and free it "
     "with the last kref_put()."),
    (re.compile(r"BUG: scheduling while atomic|BUG: sleeping function called from invalid context"),
     "something slept while holding a spinlock or in the interrupt handler: no kmalloc(GFP_KERNEL), mutex or "
     "copy_to_user() there."),
]


def known_cause(oops: str) -> str:
    """A hint for a BUG whose cause is known, to add after the excerpt ("" if none)."""
    return next((f"\n  This BUG usually means: {why}" for rx, why in KNOWN_CAUSES if rx.search(oops)), "")


# frames of the kernel's own NMI and panic handling, not of the code that was stuck
_NMI_FRAMES = re.compile(r"^\s*(dump_stack_lvl|panic|nmi_panic|pci_serr_error|io_check_error|unknown_nmi_error|"
                         r"default_do_nmi|exc_nmi|end_repeat_nmi|asm_exc_nmi|_printk)\b")


def _excerpt(oops: str, lines: int = 16, module: str = "", ko: Path | None = None) -> str:
    """The lines of an Oops a student can read: what, where (RIP), and the call trace; no register dump,
    no `? ` guesses, no frames of the NMI that caught a hang; frames of the student's module with their
    file:line (gradelib/oopsmap.py)."""
    keep = []
    for ln in oops.splitlines():
        ln = re.sub(r"^\[\s*\d+\.\d+\]\s?", "", ln).rstrip()
        s = ln.strip()
        if not s or _REGISTERS.match(s) or "cut here" in ln or s.startswith("? ") or _NMI_FRAMES.match(s):
            continue
        keep.append(ln)
    return oopsmap.annotate("\n".join(keep[:lines]), module, ko) if module else "\n".join(keep[:lines])


@pytest.fixture(scope="module")
def vm_lab(request: pytest.FixtureRequest):
    """One VM for the whole test module (LAB = VmLabSpec(...)), built and booted before its first test."""
    spec = getattr(request.module, "LAB")
    if not isinstance(spec, VmLabSpec):
        raise pytest.UsageError(f"{request.module.__name__}: the `vm` fixture needs LAB = VmLabSpec(...)")
    build = request.config._grader.build_for(spec)
    lab = VmLab(spec, build)
    try:
        lab.setup()
        yield lab
    finally:
        lab.close()
        build.cleanup()


@pytest.fixture
def vm(vm_lab: VmLab, request: pytest.FixtureRequest):
    """The lab's VM for one test: fails at once after an Oops or a failed build; cleans up after the test."""
    vm_lab.begin(request.node.name)
    yield vm_lab
    if vm_lab.detail:
        request.node._grader_detail = vm_lab.detail  # type: ignore[attr-defined]  (report.txt)
    call = getattr(request.node, "_grader_rep_call", None)
    vm_lab.end(failed=call is None or call.failed)
