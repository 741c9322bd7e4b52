"""Lab 2: sigaction(): sa_mask, SA_RESTART against EINTR, SA_SIGINFO and
siginfo_t, sigprocmask() and sigpending(), a race-free wait with
sigsuspend(), and the SIGCHLD-versus-fork() race.

Deterministic throughout: signals are sent only after the program says it is
ready (or is seen asleep in read()), and both races are provoked on every run
by the harness library grader/harness/raceinject.c: it sends the awaited
signal exactly between the test of the flag and the wait, and (with
RACEINJECT_AT=fork) returns from fork() only after the child has exited, so
the child's SIGCHLD comes before the parent can record the child.
"""
from __future__ import annotations

import re
import signal
import time

import pytest

from gradelib import LabSpec, Program, diagnose, graded, prereq
from gradelib.timescale import scale

LAB = LabSpec(
    number=2,
    folder="02-sigaction",
    programs={
        "mask": Program(["mask.c"]),
        "restart": Program(["restart.c"]),
        "whosent": Program(["whosent.c"]),
        "pending": Program(["pending.c"]),
        "waiter": Program(["waiter.c"]),
        "jobs": Program(["jobs.c"]),
    },
)

READY = r"ready \(pid \d+\)"
UNSAFE = ("The async-signal-safety checker saw a handler call functions that are not async-signal-safe "
          "(signal-safety(7)): copy what you need into volatile sig_atomic_t variables and print from main.")


def _asleep(p, in_read: bool, why: str, timeout: float = 10.0, ended: str = "") -> None:
    """Wait until the program sleeps in the kernel (in read(2) on its stdin when in_read), as /proc shows it,
    so that a signal sent now interrupts that sleep.  Polls the kernel's view; no guessing.  It fails the
    test with `why`, or with `ended` when the program ended (if given)."""
    deadline = time.monotonic() + timeout * scale()
    gone = False
    while time.monotonic() < deadline:
        snap = diagnose.host(p.pid)
        if snap.state == "S" and (not in_read or snap.syscall_nr is None
                                   or (snap.syscall_nr == 0 and snap.args[:1] == (0,))):
            return  # asleep (in read(0, ...)); syscall None: /proc/PID/syscall not readable here
        if snap.state in ("", "Z"):
            gone = True
            break  # it has ended
        time.sleep(0.001)
    out = p.wait(1.0)
    pytest.fail(out.explain(ended if gone and ended else why), pytrace=False)


def _blocked_in_read(p, ended: str = "") -> None:
    _asleep(p, True, f"`{p.what}` was never seen waiting in read() on its standard input.", ended=ended)


@prereq
def test_every_program_builds(lab) -> None:
    lab.build_all()


# --- Task 1: sa_mask ------------------------------------------------------------------

def _trace(lab, *args: str) -> tuple[list[str], object]:
    p = lab.spawn("mask", *args)
    p.expect(READY)
    p.kill(signal.SIGUSR1)
    p.send("report\n")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, f"`{' '.join(['mask', *args])}` got SIGUSR1 and should report its trace and exit 0: install "
                       f"on_usr1 and on_usr2 with sigaction(2).")
    m = re.search(r"^trace:(.*)$", out.after_signal, re.M)
    assert m, out.explain("Expected a line `trace: ...`.")
    return m.group(1).split(), out


@graded(task=1, points=5)
def test_with_sa_mask_sigusr2_waits_until_the_sigusr1_handler_returns(lab) -> None:
    trace, out = _trace(lab)
    assert trace == ["usr1-begin", "usr1-end", "usr2"], out.explain(
        f"Expected `trace: usr1-begin usr1-end usr2`: with SIGUSR2 in on_usr1's sa_mask, the SIGUSR2 raised inside "
        f"on_usr1 stays pending until on_usr1 returns. Got: {' '.join(trace) or '(empty)'}.")
    out.expect_sigsafe(UNSAFE)


@graded(task=1, points=5)
def test_with_an_empty_mask_sigusr2_interrupts_the_sigusr1_handler(lab) -> None:
    trace, out = _trace(lab, "--empty-mask")
    assert trace == ["usr1-begin", "usr2", "usr1-end"], out.explain(
        f"Expected `trace: usr1-begin usr2 usr1-end`: with --empty-mask, on_usr1's sa_mask is empty, so SIGUSR2 "
        f"is delivered inside on_usr1 as soon as it is raised. Got: {' '.join(trace) or '(empty)'}.")


def _handled(p, sig: int, why: str, timeout: float = 10.0) -> None:
    """Wait until `sig` is no longer pending and the program sleeps again in read() on its stdin: its
    handler has run and returned (a handler runs in user mode, between the two)."""
    deadline = time.monotonic() + timeout * scale()
    bit = 1 << (sig - 1)
    while time.monotonic() < deadline:
        snap = diagnose.host(p.pid)
        if snap.state in ("", "Z"):
            break
        if not snap.pending & bit and snap.state == "S" and snap.syscall_nr in (None, 0):
            return
        time.sleep(0.001)
    out = p.wait(1.0)
    pytest.fail(out.explain(why), pytrace=False)


@graded(task=1, points=2)
def test_both_handlers_stay_installed_for_a_second_sigusr1(lab) -> None:
    p = lab.spawn("mask")
    p.expect(READY)
    _blocked_in_read(p)
    p.kill(signal.SIGUSR1)
    _handled(p, signal.SIGUSR1, "`mask` did not go back to reading its input after the first SIGUSR1.")
    p.kill(signal.SIGUSR1)
    _handled(p, signal.SIGUSR1, "`mask` did not go back to reading its input after a second SIGUSR1, sent once the "
                                "first was handled: a handler installed with sigaction() stays installed until it "
                                "is changed. SA_RESETHAND would make it one-shot (the second SIGUSR1 finds SIG_DFL "
                                "and terminates the program): leave it out of sa_flags.")
    p.send("report\n")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "`mask` should report its trace and exit 0 at the end of its input.")
    m = re.search(r"^trace:(.*)$", out.after_signal, re.M)
    trace = m.group(1).split() if m else []
    assert trace == ["usr1-begin", "usr1-end", "usr2"] * 2, out.explain(
        f"Two SIGUSR1, one after the other, should each run on_usr1 and then on_usr2: expected "
        f"`trace: usr1-begin usr1-end usr2 usr1-begin usr1-end usr2`, got {' '.join(trace) or '(nothing)'}. "
        f"Both handlers must stay installed (no SA_RESETHAND).")


# --- Task 2: SA_RESTART and EINTR -----------------------------------------------------------

def _interrupted_reads(lab, *args: str):
    p = lab.spawn("restart", *args)
    p.expect(READY)
    p.send("alpha\n")
    p.expect(r"read 6 bytes")
    gave_up = (f"`{p.what}` ended after SIGUSR1 interrupted its read() instead of reading on: a read that fails "
               f"with EINTR is not an error and not the end of the input; count it, print the line and read again.")
    for i in range(2):
        _blocked_in_read(p, ended=gave_up if i else "")
        p.kill(signal.SIGUSR1)
        p.expect(r"handled SIGUSR1")
        if not args:
            p.expect(r"read interrupted \(EINTR\), reading again")
    _blocked_in_read(p, ended=gave_up)
    p.send("beta\n")
    p.expect(r"read 5 bytes")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "After the signals the read loop must go on reading to end of file and exit 0: a read that "
                       "fails with EINTR is not an error and not the end of the input; read again.")
    m = re.search(r"bytes (\d+), lines (\d+), signals (\d+), interrupted reads (\d+)", out.stdout)
    assert m, out.explain("Expected the final line `bytes B, lines L, signals S, interrupted reads E`.")
    return out, tuple(int(x) for x in m.groups())


@graded(task=2, points=8)
def test_without_sa_restart_the_read_fails_with_eintr_and_the_loop_reads_again(lab) -> None:
    out, (b, lines, sigs, intr) = _interrupted_reads(lab)
    assert (b, lines, sigs) == (11, 2, 2), out.explain(
        "Expected `bytes 11, lines 2, signals 2`: all the input, and both signals counted.")
    assert intr == 2, out.explain(
        f"Two SIGUSR1 arrived while read() was blocked; without SA_RESTART each made read() fail with EINTR, so "
        f"expected `interrupted reads 2`, got {intr}. Install the handler with sa_flags = 0 when --restart is "
        f"not given, and count each EINTR.")
    out.expect_sigsafe(UNSAFE)


@graded(task=2, points=8)
def test_with_sa_restart_the_kernel_restarts_the_read(lab) -> None:
    out, (b, lines, sigs, intr) = _interrupted_reads(lab, "--restart")
    assert (b, lines, sigs) == (11, 2, 2), out.explain(
        "Expected `bytes 11, lines 2, signals 2`: all the input, and both signals counted.")
    assert intr == 0 and "EINTR" not in out.stdout, out.explain(
        "With --restart the handler is installed with SA_RESTART: the kernel restarts the read after the handler "
        "and the loop never sees EINTR. Expected `interrupted reads 0`.")


# --- Task 3: SA_SIGINFO ----------------------------------------------------------------------

def _whosent(lab, command: str):
    p = lab.spawn("whosent")
    m = p.expect(r"my pid is (\d+), my uid is (\d+)")
    me, uid = int(m.group(1)), int(m.group(2))
    p.send(command + "\n")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, f"whosent should report the `{command}` experiment and exit 0: install on_signal for "
                       f"SIGUSR1 and SIGALRM with sa_sigaction and SA_SIGINFO.")
    r = re.search(r"^(SIG\w+|another signal) from pid (-?\d+) uid (-?\d+), si_code (\S+?)(?:, value (-?\d+))?$",
                  out.stdout, re.M)
    assert r, out.explain("Expected a line like `SIGUSR1 from pid P uid U, si_code SI_USER`.")
    sender = re.search(r"sender: child pid (\d+)", out.stdout)
    return out, me, uid, r, int(sender.group(1)) if sender else None


@graded(task=3, points=4)
def test_siginfo_names_the_process_that_sent_kill(lab) -> None:
    out, me, uid, r, sender = _whosent(lab, "kill")
    sig, pid, suid, code = r.group(1), int(r.group(2)), int(r.group(3)), r.group(4)
    assert sig == "SIGUSR1", out.explain(f"The handler should have seen si_signo SIGUSR1, not {sig}.")
    assert pid == sender, out.explain(f"The child {sender} sent the signal, the handler saw si_pid {pid}: copy "
                                      f"si->si_pid in the handler.")
    assert suid == uid, out.explain(f"The sender runs as uid {uid}, the handler saw si_uid {suid}: copy si->si_uid.")
    assert code == "SI_USER", out.explain(f"kill(2) sends with si_code SI_USER; the program printed {code}: copy "
                                          f"si->si_code and name it in code_name().")
    out.expect_sigsafe(UNSAFE)


@graded(task=3, points=3)
def test_siginfo_shows_sigqueue_and_its_value(lab) -> None:
    out, me, uid, r, sender = _whosent(lab, "queue")
    pid, code, value = int(r.group(2)), r.group(4), r.group(5)
    assert code == "SI_QUEUE" and pid == sender, out.explain(
        f"sigqueue(3) sends with si_code SI_QUEUE and the sender's pid ({sender}); got {code} from pid {pid}.")
    assert value == "42", out.explain(f"The child queued the value 42; copy si->si_value.sival_int (got {value}).")


@graded(task=3, points=3)
def test_siginfo_shows_raise_as_si_tkill_from_the_program_itself(lab) -> None:
    out, me, uid, r, sender = _whosent(lab, "raise")
    pid, code = int(r.group(2)), r.group(4)
    assert code == "SI_TKILL" and pid == me, out.explain(
        f"raise(3) sends to the calling thread with tgkill(2): si_code SI_TKILL and si_pid the program's own pid "
        f"({me}); got {code} from pid {pid}.")


@graded(task=3, points=2)
def test_siginfo_shows_a_timer_signal_comes_from_the_kernel(lab) -> None:
    out, me, uid, r, sender = _whosent(lab, "timer")
    sig, pid, suid, code = r.group(1), int(r.group(2)), int(r.group(3)), r.group(4)
    assert sig == "SIGALRM" and code == "SI_KERNEL", out.explain(
        f"When an ITIMER_REAL timer expires the kernel sends SIGALRM with si_code SI_KERNEL (no process sent it); "
        f"got {sig} with {code}.")
    assert pid == 0 and suid != uid, out.explain(
        f"No process sent the timer's SIGALRM: the kernel leaves si_pid 0 and si_uid root's (0; 65534 inside a user "
        f"namespace that does not map root), not the program's uid ({uid}); the program printed pid {pid} uid {suid}. Copy si->si_pid and si->si_uid from "
        f"the siginfo_t, not getpid() or getuid().")


@graded(task=3, points=2)
def test_the_handler_stays_installed_for_every_experiment(lab) -> None:
    p = lab.spawn("whosent")
    p.expect(r"my pid is (\d+), my uid is (\d+)")
    for command in ("kill", "queue", "raise", "timer"):
        p.send(command + "\n")
        p.expect(r"^(SIG\w+|another signal) from pid ")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "whosent ran `kill`, `queue`, `raise` and `timer` one after the other and should report "
                       "each and exit 0: the handler installed with sigaction() stays installed (no SA_RESETHAND "
                       "in sa_flags, which would make the second signal find SIG_DFL and terminate the program).")


SI_MESGQ = -3  # <asm-generic/siginfo.h>: a message arrived on an empty POSIX message queue


@graded(task=3, points=2)
def test_a_code_code_name_does_not_know_is_named_other(lab) -> None:
    p = lab.spawn("whosent")
    p.expect(r"my pid is (\d+), my uid is (\d+)")
    # SIGUSR1 is blocked outside the waits: the grader's SI_MESGQ signal stays pending, and the SIGUSR1 that
    # `kill`'s child sends next is merged into it (a standard signal is pending once per process): the handler
    # sees SI_MESGQ.  (raise's would not merge: it is pending for the thread, and taken first.)
    p.kill(signal.SIGUSR1, code=SI_MESGQ)
    p.send("kill\n")
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "whosent should report the signal and exit 0.")
    r = re.search(r"si_code (\S+?)(?:,|$)", out.stdout, re.M)
    code = r.group(1) if r else "(no si_code line)"
    assert code in ("other", "SI_MESGQ"), out.explain(
        f"The grader queued SIGUSR1 with si_code SI_MESGQ ({SI_MESGQ}) while it was blocked, so the handler saw "
        f"that code (the child's SIGUSR1 merged into the pending one). code_name() printed `{code}`: it should name "
        f"SI_USER, SI_QUEUE, SI_TKILL and SI_KERNEL and say `other` for the rest. A negative code does not mean "
        f"that a process sent the signal with kill(): SI_TIMER, SI_MESGQ and SI_SIGIO are negative too.")


# --- Task 4: sigprocmask and sigpending ------------------------------------------------------

def _pending_line(p) -> list[str]:
    p.send("pending\n")
    m = p.expect(r"^pending:(.*)$")
    names = m.group(1).split()
    return [] if names == ["none"] else names


@graded(task=4, points=5)
def test_signals_sent_while_blocked_are_reported_pending(lab) -> None:
    p = lab.spawn("pending")
    p.expect(READY)
    before = _pending_line(p)
    for sig in (signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGUSR2):
        p.kill(sig)
    after = _pending_line(p)
    p.close_stdin()
    out = p.wait()
    assert before == [] and after == ["SIGHUP", "SIGUSR2", "SIGTERM"], out.explain(
        f"SIGUSR2, SIGHUP, SIGTERM and SIGUSR2 again were sent while blocked: expected `pending: none` before and "
        f"`pending: SIGHUP SIGUSR2 SIGTERM` after (each once, in the order of sigs[]), got {before or ['none']} and "
        f"{after or ['none']}. Block them with sigprocmask(SIG_BLOCK, ...) and list them with sigpending(2).")
    out.expect_exit(0, "pending should exit 0 at the end of its input.")


@graded(task=4, points=5)
def test_unblocking_delivers_each_pending_signal_once(lab) -> None:
    p = lab.spawn("pending")
    p.expect(READY)
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGUSR1):
        p.kill(sig)
    held = _pending_line(p)
    p.send("unblock\n")
    m = p.expect(r"^delivered:(.*)$")
    counts = dict(kv.split("=") for kv in m.group(1).split())
    after = _pending_line(p)
    p.send("block\n")
    p.expect(r"^blocked$")
    p.kill(signal.SIGTERM)
    again = _pending_line(p)
    p.close_stdin()
    out = p.wait()
    assert held == ["SIGINT", "SIGUSR1"], out.explain(
        f"SIGINT (twice) and SIGUSR1 were sent while blocked; expected `pending: SIGINT SIGUSR1`, got "
        f"{held or ['none']}.")
    assert counts == {"SIGHUP": "0", "SIGINT": "1", "SIGUSR1": "1", "SIGUSR2": "0", "SIGTERM": "0"}, out.explain(
        "After `unblock` every pending signal is delivered once (two SIGINTs merged into one): expected "
        "SIGINT=1 SIGUSR1=1 and the rest 0. Restore the saved mask with sigprocmask(SIG_SETMASK, &old, NULL).")
    assert after == [] and again == ["SIGTERM"], out.explain(
        f"After `unblock` nothing should be pending, and after `block` a SIGTERM should be held again: got "
        f"{after or ['none']} and {again or ['none']}.")
    out.expect_exit(0, "pending should exit 0 at the end of its input.")
    out.expect_sigsafe(UNSAFE)


@graded(task=4, points=4)
def test_block_adds_to_the_mask_the_program_started_with(lab) -> None:
    # The grader starts `pending` with SIGQUIT (not one of its five) blocked, as a parent may.
    p = lab.spawn("pending", blocked=(signal.SIGQUIT,))
    p.expect(READY)
    p.kill(signal.SIGUSR2)
    held = _pending_line(p)
    if held != ["SIGUSR2"]:
        p.close_stdin()
        out = p.wait()
        pytest.fail(out.explain(f"SIGUSR2 was sent after `ready`: block() should have blocked it and `pending` list "
                                f"it; got `pending: {' '.join(held) or 'none'}`."), pytrace=False)
    p.kill(signal.SIGQUIT)
    p.close_stdin()
    out = p.wait()
    out.expect_exit(0, "pending was started with SIGQUIT blocked by its parent (a mask survives exec), and got "
                       "SIGQUIT after block(): it should stay blocked and pending, and the program exit 0 at the "
                       "end of its input. block() must add the five signals to the mask, sigprocmask(SIG_BLOCK, "
                       "&set, &old), not replace it with SIG_SETMASK, which unblocked SIGQUIT.")


@graded(task=4, points=4)
def test_unblock_restores_a_mask_the_program_started_with(lab) -> None:
    # The grader starts `pending` with SIGUSR2 already blocked, as a parent may (the mask survives exec).
    p = lab.spawn("pending", blocked=(signal.SIGUSR2,))
    p.expect(READY)
    p.kill(signal.SIGUSR2)
    p.kill(signal.SIGINT)
    held = _pending_line(p)
    p.send("unblock\n")
    m = p.expect(r"^delivered:(.*)$")
    counts = dict(kv.split("=") for kv in m.group(1).split())
    after = _pending_line(p)
    p.close_stdin()
    out = p.wait()
    assert held == ["SIGINT", "SIGUSR2"], out.explain(
        f"SIGUSR2 and SIGINT were sent while blocked; expected `pending: SIGINT SIGUSR2`, got {held or ['none']}.")
    assert counts.get("SIGINT") == "1" and counts.get("SIGUSR2") == "0" and after == ["SIGUSR2"], out.explain(
        f"pending was started with SIGUSR2 already blocked by its parent (a mask survives exec). `unblock` must "
        f"give back exactly the mask the program had before block(), so SIGINT is delivered and SIGUSR2 stays "
        f"blocked and pending. Got SIGINT={counts.get('SIGINT')} SIGUSR2={counts.get('SIGUSR2')} delivered, "
        f"then pending: {' '.join(after) or 'none'}. block() must keep the mask it replaces in `old` "
        f"(sigprocmask's third argument), and unblock() restore exactly that with sigprocmask(SIG_SETMASK, &old, "
        f"NULL), not SIG_UNBLOCK, which would unblock a signal the caller wanted blocked.")
    out.expect_exit(0, "pending should exit 0 at the end of its input.")


# --- Task 5: a race-free wait ------------------------------------------------------------------

LOST = ("A lost wake-up: the grader sent SIGUSR1 exactly between your test of the flag and the call that waits "
        "(the harness raceinject sends it just before the first pause()/sigsuspend()/sigwait*() call: the window a "
        "real signal can hit at any time). Its handler ran then, before the wait began, so the wait sleeps until a "
        "signal that never comes. Block SIGUSR1 with sigprocmask() BEFORE testing the flag, and wait with "
        "`while (!got) sigsuspend(&old);`: it unblocks and sleeps in one atomic step.")
NEVER_WAKES = ("waiter waits with SIGUSR1 blocked, so the signal stays pending and the wait never ends. Blocking "
               "SIGUSR1 before the test of the flag is right; the wait must then unblock it, atomically: "
               "sigsuspend(&old), with `old` the mask from before SIGUSR1 was blocked (not pause(), and not a "
               "mask that still holds SIGUSR1).")


LOST_BEFORE_MASK = ("A lost wake-up: the grader sent SIGUSR1 just before your sigprocmask() blocked it (the harness "
                    "raceinject, RACEINJECT_AT=block), and your program had tested the flag already: the handler set "
                    "`got` after the test, and the wait that follows sleeps until a signal that never comes. Block "
                    "SIGUSR1 once, before the first test of `got` (before the loop), not inside the loop after the "
                    "test.")
WAIT_CALLS = "pause(), sigsuspend(), sigwait*(), ppoll(), pselect() or a sleep function"


def _why_waiter_hangs(out, mode: str = "wait") -> str:
    """The right diagnosis of a waiter that never woke, from its state and the harness's log."""
    st = out.state
    usr1 = 1 << (signal.SIGUSR1 - 1)
    fired = re.search(r"raceinject: sent signal \d+ before (\w+)\(\)", out.stderr)
    if st is not None and st.pending & st.blocked & usr1:
        return NEVER_WAKES
    if fired and st is not None and not st.pending & usr1 and st.caught & usr1:
        return LOST if mode == "wait" else LOST_BEFORE_MASK
    if not fired:
        return (f"waiter never woke up: the grader sends SIGUSR1 just before the program's first call of "
                f"{WAIT_CALLS if mode == 'wait' else 'sigprocmask() that blocks SIGUSR1'}, and it made no such "
                f"call, so no SIGUSR1 was sent. Block SIGUSR1 with sigprocmask(), then wait with "
                f"`while (!got) sigsuspend(&old);`, not a loop that spins.")
    return "waiter never woke up after SIGUSR1 was sent."


def _raced_waiter(lab, mode: str) -> None:
    """waiter with SIGUSR1 sent by raceinject in `mode` ("wait": just before the first wait; "block": just
    before the first sigprocmask() that blocks it): it must wake once and exit 0."""
    p = lab.spawn("waiter", preload=["raceinject"],
                  env={"RACEINJECT_SIGNAL": str(int(signal.SIGUSR1)), "RACEINJECT_PROGRAM": "waiter",
                       "RACEINJECT_AT": mode})
    p.expect(r"waiting for SIGUSR1 \(#1\)")
    out = p.wait(timeout=5)
    if out.timed_out:
        pytest.fail(out.explain(_why_waiter_hangs(out, mode)), pytrace=False)
    out.expect_exit(0, "waiter should wake up after the handler has run and exit 0.")
    assert re.search(r"woken by SIGUSR1 \(#1\), handler runs so far: 1\b", out.stdout), out.explain(
        "Expected `woken by SIGUSR1 (#1), handler runs so far: 1`: main must wait until the handler has run "
        "(the flag is set), not go on at once.")
    out.expect_sigsafe(UNSAFE)


@graded(task=5, points=9)
def test_a_sigusr1_between_the_flag_test_and_the_wait_is_not_lost(lab) -> None:
    _raced_waiter(lab, "wait")


@graded(task=5, points=3)
def test_a_sigusr1_just_before_it_is_blocked_is_not_lost(lab) -> None:
    _raced_waiter(lab, "block")


@graded(task=5, points=3)
def test_each_sigusr1_wakes_the_waiter_once(lab) -> None:
    p = lab.spawn("waiter", "3")
    for i in (1, 2, 3):
        p.expect(rf"waiting for SIGUSR1 \(#{i}\)")
        _asleep(p, False, f"After `waiting for SIGUSR1 (#{i})` waiter must sleep until SIGUSR1 comes (its handler "
                          f"sets `got`): it never went to sleep. Wait with `while (!got) sigsuspend(&old);`.")
        p.kill(signal.SIGUSR1)
        p.expect(rf"woken by SIGUSR1 \(#{i}\), handler runs so far: {i}\b")
    out = p.wait()
    out.expect_exit(0, "waiter 3 should exit 0 after being woken three times.")


@graded(task=5, points=2)
def test_the_wait_keeps_the_signals_blocked_that_were_blocked_before(lab) -> None:
    # The grader starts waiter with SIGTERM blocked, as a parent may: the wait must not unblock it.
    p = lab.spawn("waiter", blocked=(signal.SIGTERM,))
    p.expect(r"waiting for SIGUSR1 \(#1\)")
    _asleep(p, False, "After `waiting for SIGUSR1 (#1)` waiter must sleep until SIGUSR1 comes: it never went to "
                      "sleep. Wait with `while (!got) sigsuspend(&old);`.")
    p.kill(signal.SIGTERM)
    p.kill(signal.SIGUSR1)
    out = p.wait()
    out.expect_exit(0, "waiter was started with SIGTERM blocked (a mask survives exec); SIGTERM, then SIGUSR1, came "
                       "while it waited. The wait must unblock SIGUSR1 only: sigsuspend(&old), with `old` the mask "
                       "from before SIGUSR1 was blocked, which still blocks SIGTERM (an empty mask, or one built "
                       "from scratch, let SIGTERM in and its default action ended the program).")


@graded(task=5, points=1)
def test_the_old_mask_is_back_when_waiter_exits(lab) -> None:
    p = lab.spawn("waiter", preload=["raceinject"],
                  env={"RACEINJECT_SIGNAL": str(int(signal.SIGUSR1)), "RACEINJECT_PROGRAM": "waiter",
                       "RACEINJECT_AT": "exit"})
    p.expect(r"waiting for SIGUSR1 \(#1\)")
    _asleep(p, False, "After `waiting for SIGUSR1 (#1)` waiter must sleep until SIGUSR1 comes: it never went to "
                      "sleep.")
    p.kill(signal.SIGUSR1)
    out = p.wait()
    out.expect_exit(0, "waiter should wake up after SIGUSR1 and exit 0.")
    assert "still blocked at exit" not in out.stderr, out.explain(
        "waiter ended with SIGUSR1 still blocked (the grader's harness looked at its mask as it exited): restore "
        "the old mask at the end, sigprocmask(SIG_SETMASK, &old, NULL), as the task asks; code that runs after "
        "the wait must not inherit a mask it did not ask for.")


# --- Task 6: the SIGCHLD-versus-fork() race ---------------------------------------------------

def _jobs(lab, count: int, race: bool):
    env = {"RACEINJECT_AT": "fork", "RACEINJECT_PROGRAM": "jobs"} if race else None
    out = lab.run("jobs", str(count), preload=["raceinject"] if race else None, env=env, timeout=20)
    out.expect_exit(0, f"`jobs {count}` should reap its {count} children, print one line per job and exit 0.")
    done = {int(j): int(s) for j, s in re.findall(r"^job (\d+) \(pid \d+\): done, exit status (-?\d+)$",
                                                   out.stdout, re.M)}
    lost = [int(j) for j in re.findall(r"^job (\d+) \(pid \d+\): LOST", out.stdout, re.M)]
    m = re.search(r"reaped: (\d+), unknown: (\d+)", out.stdout)
    assert m and len(done) + len(lost) == count, out.explain(
        "jobs' output is not what the program prints: keep main's printf lines as they are.")
    return out, done, lost, int(m.group(1)), int(m.group(2))


@graded(task=6, points=5)
def test_the_handler_marks_each_job_done_with_its_status(lab) -> None:
    out, done, lost, reaped, unknown = _jobs(lab, 3, race=False)
    assert not lost, out.explain(
        f"The handler reaped {reaped} children but matched {reaped - unknown} of them to a job: record_exit() "
        f"must find the job whose pid is the reaped one and mark it done.")
    assert done == {1: 1, 2: 2, 3: 3}, out.explain(
        f"Job i exits with status i; the table says {done}: store WEXITSTATUS(status) in the job.")
    assert (reaped, unknown) == (3, 0), out.explain(
        f"Every child reaped was one of the 3 jobs, and each was found: expected `reaped: 3, unknown: 0`, got "
        f"`reaped: {reaped}, unknown: {unknown}`. record_exit() counts a child in `unknown` only when no job "
        f"matches: return once the job is found.")
    out.expect_sigsafe(UNSAFE)


@graded(task=6, points=12)
def test_a_child_that_exits_before_fork_returns_is_not_lost(lab) -> None:
    out, done, lost, reaped, unknown = _jobs(lab, 3, race=True)
    assert not lost, out.explain(
        f"The grader made each child exit before fork() returned to the parent (the window a fast child can hit "
        f"any time). Jobs {lost} were lost: SIGCHLD was not blocked, so the handler ran and reaped the child "
        f"before main had written its pid into the table, and could not match it ({unknown} unknown). Block "
        f"SIGCHLD with sigprocmask() before fork(), record the child, then restore the old mask (and restore it "
        f"in the child too).")
    assert done == {1: 1, 2: 2, 3: 3}, out.explain(f"Job i exits with status i; the table says {done}.")


@graded(task=6, points=3)
def test_each_child_runs_with_the_mask_of_before_the_fork(lab) -> None:
    out, done, lost, reaped, unknown = _jobs(lab, 3, race=True)
    assert not lost, out.explain(
        f"Jobs {lost} were lost with the race injected: the parent does not block SIGCHLD around fork() yet (the "
        f"test above). This test checks what goes with that block: each child restores the old mask.")
    held = re.findall(r"^raceinject: child (\d+) exited with SIGCHLD blocked$", out.stderr, re.M)
    assert not held, out.explain(
        f"{len(held)} of the 3 children exited with SIGCHLD still blocked (the grader's harness read each child's "
        f"mask, /proc/PID/status SigBlk, before it was reaped). A child inherits its parent's mask: the parent "
        f"blocked SIGCHLD around fork(), so the child must restore the old mask first thing, "
        f"sigprocmask(SIG_SETMASK, &old, NULL), or the program a real job runs starts with SIGCHLD blocked.")
