"""Lab 1: signal(): handlers, the volatile sig_atomic_t flag, async-signal
safety, SIG_IGN/SIG_DFL across fork and exec, the one-shot trap of signal()
under -std=c11, a first look at signal loss, and a handler whose printf()
hangs the program.

Every test synchronises with the program through its output ("ready ...")
and its stdin; signals are sent only when the program has said it is ready
for them, and counted only after it has been told to look.
"""
from __future__ import annotations

import re
import signal

import pytest

from gradelib import LabBuild, LabSpec, Outcome, Program, graded, prereq

LAB = LabSpec(
    number=1,
    folder="01-signal",
    programs={
        "worker": Program(["worker.c"]),
        "reaper": Program(["reaper.c"]),
        "inherit": Program(["inherit.c"]),
        "oneshot": Program(["oneshot.c"], std="c11"),
        "burst": Program(["burst.c"]),
        "ticker": Program(["ticker.c"]),
    },
)

READY = r"ready \(pid \d+\)"
UNSAFE = ("The async-signal-safety checker saw your handler call functions that are not async-signal-safe. "
          "A handler may interrupt main in the middle of printf() or malloc() and deadlock or corrupt their "
          "state: in the handler only set a volatile sig_atomic_t flag or use write(2) "
          "(list in signal-safety(7)); print from main.")
SHARED = ("A variable that a handler and main share must be declared `volatile sig_atomic_t` (chapter, section 2): "
          "`volatile`, or the optimiser may keep it in a register and main never sees the handler's store; "
          "`sig_atomic_t`, the integer type that is read and written in one piece, and the only one C lets a "
          "handler assign to.")
SA_RESTART = 0x10000000  # <signal.h> on Linux; Python's signal module does not export it


def _probe(mode: str, program: str) -> dict[str, str]:
    """The environment of grader/harness/sigprobe.c in `mode`, for `program` only."""
    return {"SIGPROBE_MODE": mode, "SIGPROBE_PROGRAM": program}


def _compiles_with(lab, name: str, variables: tuple[str, ...], label: str) -> str | None:
    """None if a copy of program `name` compiles with a _Static_assert that each of `variables` has the type
    volatile sig_atomic_t, placed just before main() (-Dmain=...: main comes after what its handlers share);
    else the grader's message about the build."""
    prog = LAB.programs[name]
    asserts = " ".join(f"_Static_assert(__builtin_types_compatible_p(__typeof__(&{v}), volatile sig_atomic_t *), "
                       f"\"{v} is not volatile sig_atomic_t\");" for v in variables)
    check = Program(prog.sources, std=prog.std, sanitize=False,
                    cflags=[f"-Dmain=sigcheck_main(void); {asserts} int main"])
    build = LabBuild(LabSpec(LAB.number, LAB.folder, {name: check}), lab.src.parent, lab.root / "typecheck" / label)
    try:
        build.program(name)
    except pytest.fail.Exception as e:
        return str(e)
    return None


def _shared_types(lab, name: str, variables: tuple[str, ...]) -> None:
    """Fail unless each of `variables` of program `name` is declared volatile sig_atomic_t."""
    if _compiles_with(lab, name, variables, "all") is None:
        return
    source = LAB.programs[name].sources[0]
    error = _compiles_with(lab, name, (), "none")  # the copy without the checks: the compiler's own words
    if error is not None:
        pytest.fail(f"The grader compiles a copy of {source} that checks the type of "
                    f"{', '.join(f'`{v}`' for v in variables)} just before main(), and even without the checks that "
                    f"copy did not compile: declare main() after the handlers, as given.\n{error}", pytrace=False)
    bad = [v for v in variables if len(variables) == 1 or _compiles_with(lab, name, (v,), v) is not None]
    pytest.fail(f"In {source}, {' and '.join(f'`{v}`' for v in bad)} {'is' if len(bad) == 1 else 'are'} not "
                f"declared `volatile sig_atomic_t`, or not declared before main(). " + SHARED, pytrace=False)


@prereq
def test_every_program_builds(lab) -> None:
    lab.build_all()


# --- Task 1: a clean shutdown on SIGINT and SIGTERM ---------------------------------------

def _stop_worker(lab, sig: int):
    p = lab.spawn("worker")
    p.expect(r"worker: ready \(pid \d+\)")
    p.kill(sig)
    out = p.wait(timeout=10)
    name = signal.Signals(sig).name
    if out.timed_out and out.state is not None and out.state.caught >> (sig - 1) & 1:
        pytest.fail(out.explain(
            f"The worker has a handler for {name}, yet it was still working 10 s after {name}: the loop never saw "
            f"the flag change. If the handler sets stop_signal, the flag is probably not `volatile`: the compiler "
            f"may read it once, keep it in a register and never look again. Declare it "
            f"`static volatile sig_atomic_t stop_signal;`."), pytrace=False)
    out.expect_exit(0, f"After {name} the worker must leave its loop, print its summary from main and exit "
                       f"with status 0: install a handler for {name} with signal() that sets the "
                       f"volatile sig_atomic_t flag, and test the flag in the loop.")
    m = re.search(r"summary: (\d+) items done, checksum (\d+), stopped by (\w+)", out.after_signal)
    assert m, out.explain(f"Expected the line `summary: K items done, checksum S, stopped by {name}` "
                          f"after {name}: the loop must end because of the flag, not because all items are done.")
    return out, int(m.group(1)), int(m.group(2)), m.group(3)


@graded(task=1, points=6)
def test_sigint_stops_the_worker_with_a_summary_and_exit_0(lab) -> None:
    out, done, checksum, by = _stop_worker(lab, signal.SIGINT)
    assert by == "SIGINT", out.explain(f"The summary says `stopped by {by}`, but the worker got SIGINT: store the "
                                       f"number of the signal (the handler's argument) in the flag.")
    assert checksum == done * (done + 1) // 2, out.explain(
        f"The checksum {checksum} does not match {done} finished items: an item was cut short. Test the flag "
        f"between items only, and do no work in the handler.")


@graded(task=1, points=6)
def test_sigterm_stops_the_worker_with_a_summary_and_exit_0(lab) -> None:
    out, done, checksum, by = _stop_worker(lab, signal.SIGTERM)
    assert by == "SIGTERM", out.explain(f"The summary says `stopped by {by}`, but the worker got SIGTERM: store "
                                        f"the number of the signal (the handler's argument) in the flag.")
    assert checksum == done * (done + 1) // 2, out.explain(
        f"The checksum {checksum} does not match {done} finished items: an item was cut short.")


@graded(task=1, points=3)
def test_the_shutdown_handler_calls_only_async_signal_safe_functions(lab) -> None:
    out, _, _, _ = _stop_worker(lab, signal.SIGINT)
    out.expect_sigsafe(UNSAFE)


# What the sanitizers write on stderr themselves (their reports fail the run anyway).
TOOL_LINES = re.compile(r"^(==\d+==|SUMMARY: \w+Sanitizer|.*runtime error: |sigsafe: )")


@graded(task=1, points=2)
def test_the_shutdown_handler_prints_nothing(lab) -> None:
    out, _, _, _ = _stop_worker(lab, signal.SIGINT)
    extra = [ln for ln in out.stdout.splitlines() if not re.match(r"worker: ready|summary: ", ln)]
    assert not extra, out.explain("The worker printed more than the ready line and the summary: the handler "
                                  "should only set the flag; main prints the summary once.")
    errs = [ln for ln in out.stderr.splitlines() if ln.strip() and not TOOL_LINES.match(ln)]
    assert not errs, out.explain(
        f"The worker wrote to stderr (`{errs[0]}`), and it has nothing to report there when it stops normally: "
        f"on_stop stores the signal's number in stop_signal and does nothing else, not even a write(2). "
        f"main prints the summary.")


@graded(task=1, points=3)
def test_the_stop_flag_is_a_volatile_sig_atomic_t(lab) -> None:
    _stop_worker(lab, signal.SIGINT)
    _shared_types(lab, "worker", ("stop_signal",))


# --- Task 2: a SIGCHLD handler that is safe at any moment ---------------------------------

def _reaper(lab, children: int, **kw: object):
    out = lab.run("reaper", str(children), timeout=20, **kw)
    out.expect_exit(0, "reaper should run to the end and exit with status 0.")
    kids = [int(x) for x in re.findall(r"forked child (\d+)", out.stdout)]
    reaped = {int(pid): int(st) for pid, st in re.findall(r"reaped child (\d+) \(exit status (\d+)\)", out.stdout)}
    m = re.search(r"children reaped by the handler: (\d+) of (\d+)", out.stdout)
    assert len(kids) == children and m, out.explain("reaper's output is not what the program prints: keep the "
                                                    "printf lines of main as they are.")
    return out, kids, reaped, int(m.group(1))


@graded(task=2, points=4)
def test_the_sigchld_handler_reaps_the_child_and_reports_it(lab) -> None:
    out, kids, reaped, count = _reaper(lab, 1)
    assert count == 1 and kids[0] in reaped, out.explain(
        "When SIGCHLD was unblocked the handler should have reaped the child with waitpid(-1, &status, WNOHANG), "
        "added 1 to `reaped` and written `reaped child PID (exit status S)` with write(2). Install the handler "
        "with signal(SIGCHLD, on_chld).")
    assert reaped[kids[0]] == 10, out.explain(
        f"The child exited with status 10, the handler reported {reaped[kids[0]]}: use WEXITSTATUS(status).")


@graded(task=2, points=5)
def test_one_sigchld_reaps_every_finished_child(lab) -> None:
    out, kids, reaped, count = _reaper(lab, 3)
    if sorted(reaped) == sorted(kids):
        assert count == 3, out.explain(
            f"The handler reaped and reported all three children (three `reaped child` lines), but `reaped` says "
            f"{count}: add 1 to `reaped` for each child, inside the loop, next to the line you write.")
    assert sorted(reaped) == sorted(kids), out.explain(
        f"Three children ended while SIGCHLD was blocked: they leave ONE pending SIGCHLD (standard signals do not "
        f"queue), so the handler ran once, and it reported {len(reaped)} of them. Call "
        f"waitpid(-1, &status, WNOHANG) in a loop until it returns 0 or -1.")


@graded(task=2, points=4)
def test_the_sigchld_handler_preserves_errno(lab) -> None:
    out, kids, reaped, count = _reaper(lab, 1)
    assert count >= 1, out.explain("The handler did not reap the child, so this test cannot check errno yet: "
                                   "do the first part of the task first.")
    m = re.search(r"errno after the handler: (\S+) \((.*)\)", out.stdout)
    assert m and m.group(2) == "preserved", out.explain(
        f"main had errno == EBADF when the handler interrupted it, and found "
        f"{m.group(1) if m else 'something else'} afterwards: the handler's last waitpid() failed with ECHILD. "
        f"Save errno at the start of the handler and restore it before returning.")


@graded(task=2, points=3)
def test_the_sigchld_handler_calls_only_async_signal_safe_functions(lab) -> None:
    out, kids, reaped, count = _reaper(lab, 2)
    assert count >= 1, out.explain("The handler did not run or did not reap: install it and write its body first.")
    out.expect_sigsafe(UNSAFE)


@graded(task=2, points=2)
def test_the_sigchld_handler_does_not_wait_for_a_child_still_running(lab) -> None:
    out, kids, reaped, count = _reaper(lab, 1, preload=["sigprobe"], env=_probe("child", "reaper"))
    assert count >= 1, out.explain("The handler did not run or did not reap: install it and write its body first.")
    m = re.search(r"sigprobe: (\w+)\(\) without WNOHANG while child (\d+) was running", out.stderr)
    assert not m, out.explain(
        f"In this run reaper had one more child, started by the grader, still running when the handler ran. "
        f"The handler called {m.group(1) if m else ''}() without WNOHANG, which waits until that child ends: "
        f"the handler, and the whole program with it, would have stopped there (the grader ended child "
        f"{m.group(2) if m else ''} to let it go on). Reap with waitpid(-1, &status, WNOHANG): it returns 0 when "
        f"the children left are all still running, and the loop ends.")
    assert sorted(reaped) == sorted(kids), out.explain(
        "With one more child still running, the handler should still reap and report the child that ended, "
        "and return.")


@graded(task=2, points=2)
def test_the_reaped_counter_is_a_volatile_sig_atomic_t(lab) -> None:
    out, kids, reaped, count = _reaper(lab, 1)
    assert count >= 1, out.explain("The handler did not run or did not reap: install it and write its body first.")
    _shared_types(lab, "reaper", ("reaped",))


# --- Task 3: SIG_IGN, SIG_DFL, and what a child inherits -----------------------------------

def _inherit(lab):
    p = lab.spawn("inherit")
    p.expect(READY)
    return p


def _dispositions(text: str, who: str) -> tuple[str, str] | None:
    m = re.search(rf"^{re.escape(who)}: SIGUSR1=(\w+) SIGUSR2=(\w+)$", text, re.M)
    return (m.group(1), m.group(2)) if m else None


@graded(task=3, points=5)
def test_sig_ign_makes_sigusr1_harmless_and_the_handler_catches_sigusr2(lab) -> None:
    p = _inherit(lab)
    p.kill(signal.SIGUSR1)
    p.kill(signal.SIGUSR2)
    p.send("go\n")
    out = p.wait(timeout=10)
    out.expect_exit(0, "inherit got SIGUSR1 and SIGUSR2 and should have survived both: SIGUSR1 is to be ignored "
                       "(signal(SIGUSR1, SIG_IGN)), SIGUSR2 caught by on_usr2.")
    assert re.search(r"SIGUSR2 caught 1 time\(s\)", out.after_signal), out.explain(
        "SIGUSR2 was sent once; the program should report `SIGUSR2 caught 1 time(s)`.")


@graded(task=3, points=5)
def test_a_forked_child_inherits_ignored_and_caught_signals(lab) -> None:
    p = _inherit(lab)
    text = p.output()
    p.close_stdin()
    out = p.wait()
    assert _dispositions(text, "parent") == ("ignored", "caught"), out.explain(
        "The parent should ignore SIGUSR1 and catch SIGUSR2 (line `parent: SIGUSR1=ignored SIGUSR2=caught`).")
    assert _dispositions(text, "child after fork") == ("ignored", "caught"), out.explain(
        "After fork() the child keeps every disposition of the parent.")


@graded(task=3, points=5)
def test_exec_keeps_sig_ign_and_resets_handlers_to_sig_dfl(lab) -> None:
    p = _inherit(lab)
    text = p.output()
    p.close_stdin()
    out = p.wait()
    got = _dispositions(text, "child after exec")
    assert got == ("ignored", "default"), out.explain(
        f"After exec the child reported SIGUSR1={got[0] if got else '?'} SIGUSR2={got[1] if got else '?'}; expected "
        f"SIGUSR1=ignored (SIG_IGN survives exec) and SIGUSR2=default (a handler cannot survive exec). Set up the "
        f"parent's dispositions as the task says.")


@graded(task=3, points=5)
def test_a_child_restores_sig_dfl_before_exec(lab) -> None:
    p = _inherit(lab)
    text = p.output()
    p.close_stdin()
    out = p.wait()
    assert _dispositions(text, "parent") == ("ignored", "caught"), out.explain(
        "The parent does not ignore SIGUSR1 yet, so there is nothing to restore: do the parent's part first.")
    got = _dispositions(text, "child after reset and exec")
    assert got == ("default", "default"), out.explain(
        "The third child (the one that resets, then execs) should set SIGUSR1 back to SIG_DFL before exec, so the "
        "program it runs starts with "
        "the default action (`child after reset and exec: SIGUSR1=default SIGUSR2=default`).")


# --- Task 4: the one-shot trap of signal() under -std=c11 -----------------------------------

TRAP = ("oneshot (built with -std=c11) must survive a second SIGUSR1. With -std=c11 glibc's signal() has System V "
        "semantics: the disposition goes back to SIG_DFL when the signal is delivered, so the second SIGUSR1 kills "
        "the program. Install the handler with sigaction(2) (sa_flags = SA_RESTART, no SA_RESETHAND).")


def _oneshot(lab, signals: int):
    p = lab.spawn("oneshot")
    p.expect(READY)
    for i in range(1, signals + 1):
        p.kill(signal.SIGUSR1)
        p.expect(rf"caught SIGUSR1 #{i}\b")
    return p


@graded(task=4, points=5)
def test_the_handler_survives_a_second_sigusr1_under_std_c11(lab) -> None:
    p = _oneshot(lab, 1)
    p.kill(signal.SIGUSR1)
    try:
        p.expect(r"caught SIGUSR1 #2\b", timeout=10)
    except pytest.fail.Exception as e:
        pytest.fail(TRAP + "\n" + str(e), pytrace=False)
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, TRAP)


@graded(task=4, points=4)
def test_three_sigusr1_are_caught_and_the_input_is_read_completely(lab) -> None:
    p = _oneshot(lab, 1)
    for i in (2, 3):
        p.kill(signal.SIGUSR1)
        try:
            p.expect(rf"caught SIGUSR1 #{i}\b")
        except pytest.fail.Exception as e:
            pytest.fail(TRAP + "\n" + str(e), pytrace=False)
    p.send("first\nsecond\n")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "oneshot should catch every SIGUSR1, read its input to the end and exit 0.")
    assert re.search(r"lines: 2, SIGUSR1 caught: 3", out.after_signal), out.explain(
        "Expected `lines: 2, SIGUSR1 caught: 3`: every SIGUSR1 is caught by the same handler, every line counted.")


REINSTALLED = ("oneshot re-installs its handler with signal() while the handler runs. With System V signal() the "
               "disposition is SIG_DFL from the moment the signal is delivered until that call: a second SIGUSR1 "
               "in that window kills the program, and the grader sent one right there (`sigprobe: sent signal 10 "
               "as signal() re-installed a handler`). Do not re-install: install on_usr1 once, in main, with "
               "sigaction() (Task 4; chapter, section 6).")


@graded(task=4, points=3)
def test_a_sigusr1_at_the_start_of_the_handler_does_not_kill_oneshot(lab) -> None:
    p = lab.spawn("oneshot", preload=["sigprobe"], env=_probe("reinstall", "oneshot"), sigsafe=False)
    p.expect(READY)
    for i in (1, 2):
        p.kill(signal.SIGUSR1)
        try:
            p.expect(rf"caught SIGUSR1 #{i}\b")
        except pytest.fail.Exception as e:
            why = REINSTALLED if "as signal() re-installed a handler" in str(e) else TRAP
            pytest.fail(why + "\n" + str(e), pytrace=False)
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, REINSTALLED if "as signal() re-installed a handler" in out.stderr else TRAP)


@graded(task=4, points=3)
def test_on_usr1_is_installed_with_sa_restart(lab) -> None:
    p = lab.spawn("oneshot", preload=["sigprobe"], env=_probe("reinstall", "oneshot"), sigsafe=False)
    p.expect(READY)
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "oneshot should read its (empty) input and exit with status 0.")
    flags = re.findall(r"^sigprobe: sigaction\(10\) sa_flags 0x([0-9a-f]+)$", out.stderr, re.M)
    assert flags, out.explain("oneshot did not install a handler for SIGUSR1 with sigaction(): Task 4 asks to "
                              "install on_usr1 with sigaction(), with sa_flags = SA_RESTART.")
    assert int(flags[-1], 16) & SA_RESTART, out.explain(
        f"oneshot installed on_usr1 with sa_flags 0x{flags[-1]}, without SA_RESTART. Then a SIGUSR1 that arrives "
        f"while main waits in read() makes read() fail with EINTR instead of going on: every blocking call of the "
        f"program must cope with that. Set sa_flags = SA_RESTART (Task 4; chapter, section 6).")


# --- Task 5: standard signals do not queue ---------------------------------------------------

def _burst(lab, n: int):
    p = lab.spawn("burst")
    p.expect(READY)
    for _ in range(n):
        p.kill(signal.SIGUSR1)
        p.kill(signal.SIGRTMIN)
    p.send("go\n")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, f"burst got {n} SIGUSR1 and {n} SIGRTMIN while it blocked them; after unblocking it "
                       f"should count them with its handlers and exit 0.")
    return out


@graded(task=5, points=5)
def test_ten_sigusr1_sent_while_blocked_arrive_once(lab) -> None:
    out = _burst(lab, 10)
    m = re.search(r"SIGUSR1 delivered (\d+) time", out.after_signal)
    rt = re.search(r"SIGRTMIN delivered (\d+) time", out.after_signal)
    if m and rt and int(m.group(1)) != 1 and int(m.group(1)) + int(rt.group(1)) == 11:
        pytest.fail(out.explain(
            f"burst reported SIGUSR1 {m.group(1)} time(s) and SIGRTMIN {rt.group(1)}: together 11, the one SIGUSR1 "
            f"and the ten SIGRTMIN, but counted in the wrong place. on_rtmin must add 1 to rtmin_count, not to "
            f"usr1_count."), pytrace=False)
    assert m and int(m.group(1)) == 1, out.explain(
        "10 SIGUSR1 were sent while SIGUSR1 was blocked: the kernel keeps one pending bit per standard signal, so "
        "the handler runs exactly once. Expected `SIGUSR1 delivered 1 time(s)`: does on_usr1 add 1 to usr1_count?")


@graded(task=5, points=4)
def test_ten_sigrtmin_sent_while_blocked_arrive_ten_times(lab) -> None:
    out = _burst(lab, 10)
    m = re.search(r"SIGRTMIN delivered (\d+) time", out.after_signal)
    assert m and int(m.group(1)) == 10, out.explain(
        "10 SIGRTMIN were sent while blocked: realtime signals are queued, one entry each, so the handler runs 10 "
        "times. Expected `SIGRTMIN delivered 10 time(s)`: does on_rtmin add 1 to rtmin_count?")


@graded(task=5, points=4)
def test_a_sigusr1_delivered_twice_is_counted_twice(lab) -> None:
    p = lab.spawn("burst", preload=["sigprobe"], env=_probe("again", "burst"))
    p.expect(READY)
    p.kill(signal.SIGUSR1)
    p.send("go\n")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "burst got one SIGUSR1 while it blocked it, and another one right after unblocking it; it "
                       "should count both with its handler and exit 0.")
    m = re.search(r"SIGUSR1 delivered (\d+) time", out.after_signal)
    assert m and int(m.group(1)) == 2, out.explain(
        f"One SIGUSR1 was pending when burst unblocked it, and the grader sent a second one just after (`sigprobe: "
        f"sent signal 10 again ...`): the handler ran twice, and burst reported "
        f"{m.group(1) if m else 'no count'}. on_usr1 must add 1 to usr1_count each time it runs (usr1_count++), "
        f"not set it: a handler runs once per delivery, and that may be more than once.")


@graded(task=5, points=2)
def test_the_burst_counters_are_volatile_sig_atomic_t(lab) -> None:
    out = _burst(lab, 1)
    m = re.search(r"SIGUSR1 delivered (\d+) time", out.after_signal)
    assert m and int(m.group(1)) >= 1, out.explain("The SIGUSR1 handler did not count: write and install the "
                                                   "handlers first.")
    _shared_types(lab, "burst", ("usr1_count", "rtmin_count"))


# --- Task 6: a handler that calls printf() hangs the program --------------------------------

HANG = ("ticker hung in a lock: a SIGALRM handler that calls printf() can interrupt main's printf() while main "
        "holds stdout's lock, and then waits for that lock for ever (main cannot release it until the handler "
        "returns). In the handler only count the tick (ticks++); print `tick N` from main's loop (chapter, "
        "section 4).")


def _ticker(lab) -> tuple[Outcome, int, int, int]:
    """ticker -o /dev/null 300, which must end by itself; its summary: (lines, ticks, reported by main)."""
    out = lab.spawn("ticker", "-o", "/dev/null", "300").wait(timeout=10, hang_ends=True)
    if out.timed_out or out.stopped:
        pytest.fail(out.explain(HANG if out.state is not None and out.state.in_futex else
                                "ticker should stop by itself after 300 ticks (0.3 s at one tick a millisecond)."),
                    pytrace=False)
    out.expect_exit(0, "ticker 300 should stop after 300 ticks and exit with status 0.")
    out.expect_sigsafe(UNSAFE)
    m = re.search(r"ticker: done, (\d+) lines, (\d+) ticks, (\d+) reported by main", out.stderr)
    assert m, out.explain("Expected `ticker: done, L lines, T ticks, R reported by main` on stderr: keep main's "
                          "last lines as they are.")
    assert int(m.group(3)) > 0, out.explain(
        "The handler counted the ticks, but main reported none: in main's loop, when `ticks` has changed since the "
        "last report, print `tick N` and count it in from_main.")
    return out, int(m.group(1)), int(m.group(2)), int(m.group(3))


@graded(task=6, points=4)
def test_the_timer_handler_only_counts_and_main_reports_the_ticks(lab) -> None:
    _ticker(lab)


@graded(task=6, points=3)
def test_main_reports_each_tick_at_most_once(lab) -> None:
    out, lines, ticks, reported = _ticker(lab)
    assert reported <= ticks, out.explain(
        f"main reported {reported} ticks, but there were only {ticks}: it reports the same tick again and again. "
        f"After printing `tick N`, remember N as the last tick reported (`reported = ticks` before the printf), so "
        f"that the next report waits for a new tick.")


@graded(task=6, points=3)
def test_the_tick_counter_is_a_volatile_sig_atomic_t(lab) -> None:
    _ticker(lab)
    _shared_types(lab, "ticker", ("ticks",))
