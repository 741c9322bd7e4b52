"""The async-signal-safety checker (grader/sigsafe): a library that the grader
LD_PRELOADs into every program it runs, and a command a student can run.

Each case builds a small program from grader/sigsafe/tests/ twice, plain and
with AddressSanitizer+UBSan as the grader builds labs, runs it with the
library built exactly as the grader builds it, and reads the log as the
grader reads it.  Signals are raised by the programs themselves (raise,
sigqueue): no timing.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from gradelib import lab

SIGSAFE = lab.GRADER / "sigsafe"
PROGRAMS = SIGSAFE / "tests"
CLI = SIGSAFE / "sigsafe"
BUILDS = {"plain": [], "asan": lab.SANITIZE}


def line(fn: str, sig: str, handler: str) -> str:
    return f"sigsafe: {fn}() called from the handler for {sig} ({handler})"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    report: list[str]  # the log's lines, as the grader reads them
    log: Path

    def story(self) -> str:
        return (f"exit status {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}\n"
                f"report:\n" + "\n".join(self.report))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libsigsafe.so, built by the grader's own code (every *.c in grader/sigsafe)."""
    saved = lab._libdir
    lab.set_library_dir(tmp_path_factory.mktemp("libs"))
    try:
        lib = lab.sigsafe_library()
    finally:
        lab._libdir = saved
    assert lib is not None and lib.is_file()
    return lib


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bin")
    done: dict[tuple[str, str, str, tuple[str, ...]], Path] = {}

    def build(name: str, kind: str, std: str = "gnu11", extra: tuple[str, ...] = ()) -> Path:
        key = (name, kind, std, extra)
        if key not in done:
            exe = out / f"{name}-{kind}-{std}{''.join(extra)}"
            cmd = ["gcc", f"-std={std}", *lab.CFLAGS, *BUILDS[kind], *extra, "-o", str(exe),
                   str(PROGRAMS / f"{name}.c")]
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
            done[key] = exe
        return done[key]

    return build


@pytest.fixture(params=list(BUILDS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def run(library: Path, compiled, kind: str, tmp_path: Path):
    count = 0

    def go(name: str, *args: str, std: str = "gnu11", extra: tuple[str, ...] = (), log: bool = True,
           preload: bool = True) -> Run:
        nonlocal count
        count += 1
        exe = compiled(name, kind, std, extra)
        logf = tmp_path / f"sigsafe-{count}.log"
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **lab.SANITIZER_ENV}
        if preload:
            env["LD_PRELOAD"] = str(library)
        if log:
            env["SIGSAFE_LOG"] = str(logf)
        res = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60)
        return Run(res.returncode, res.stdout, res.stderr, lab._read_sigsafe(logf), logf)

    return go


# --- what is reported ---------------------------------------------------------------

def test_printf_in_a_sigint_handler_is_reported_with_the_signal_and_the_handler(run) -> None:
    r = run("calls", "handler", "printf")
    assert r.code == 0 and "done" in r.stdout, r.story()
    assert line("printf", "SIGINT", "on_int") in r.report, r.story()
    assert line("fflush", "SIGINT", "on_int") in r.report, r.story()


def test_printf_that_the_compiler_made_puts_is_reported_as_puts(run) -> None:
    r = run("calls", "handler", "puts")
    assert r.report == [line("puts", "SIGINT", "on_int")], r.story()


def test_malloc_and_free_in_a_handler_are_reported(run) -> None:
    r = run("calls", "handler", "malloc")
    assert r.code == 0, r.story()
    assert r.report == sorted([line("malloc", "SIGINT", "on_int"), line("free", "SIGINT", "on_int")]), r.story()


def test_exit_in_a_handler_is_reported_and_still_exits(run) -> None:
    r = run("calls", "handler", "exit")
    assert r.code == 0 and "done" not in r.stdout, r.story()
    assert r.report == [line("exit", "SIGINT", "on_int")], r.story()


def test_stdio_and_strerror_in_a_handler_are_reported(run) -> None:
    r = run("calls", "handler", "stdio")
    for fn in ("fopen", "fclose"):
        assert line(fn, "SIGINT", "on_int") in r.report, r.story()
    r = run("calls", "handler", "strerror")
    assert r.report == [line("strerror", "SIGINT", "on_int")], r.story()


def test_unlocked_stdio_in_a_handler_is_reported(run) -> None:
    r = run("calls", "handler", "unlocked")
    assert r.code == 0 and "done" in r.stdout, r.story()
    assert r.report == sorted(line(fn, "SIGINT", "on_int") for fn in
                              ("fputs_unlocked", "fwrite_unlocked", "fflush_unlocked")), r.story()


def test_the_err_and_error_families_in_a_handler_are_reported_and_still_print(run) -> None:
    r = run("calls", "handler", "err")
    assert r.code == 0 and "done" in r.stdout, r.story()
    assert r.report == sorted(line(fn, "SIGINT", "on_int") for fn in
                              ("warn", "warnx", "error", "error_at_line")), r.story()
    for text in ("warn 2: Success", "warnx 2", ": error 2", ":calls.c:1: error_at_line 2: Interrupted"):
        assert text in r.stderr, r.story()


@pytest.mark.parametrize("what", ["printf", "puts", "malloc", "exit", "stdio", "strerror", "unlocked", "err"])
def test_the_same_calls_in_main_are_not_reported(run, what: str) -> None:
    r = run("calls", "main", what)
    assert r.code == 0 and "the handler ran" in r.stdout and "done" in r.stdout, r.story()
    assert r.report == [], r.story()
    assert not r.log.exists(), "nothing to report, yet the log was created"


@pytest.mark.parametrize("what", ["safe", "_exit"])
def test_a_handler_using_only_async_signal_safe_calls_is_not_reported(run, what: str) -> None:
    r = run("calls", "handler", what)
    assert r.code == 0 and "done" in r.stdout, r.story()
    assert r.report == [], r.story()


def test_an_sa_siginfo_handler_gets_its_three_arguments_and_is_reported(run) -> None:
    r = run("siginfo")
    assert r.code == 0 and "siginfo ok (1 call)" in r.stdout, r.story()
    assert r.report == [line("fprintf", "SIGUSR1", "on_usr1")], r.story()


def test_without_sigsafe_log_the_report_goes_to_stderr(run) -> None:
    r = run("calls", "handler", "strerror", log=False)
    assert r.code == 0, r.story()
    assert line("strerror", "SIGINT", "on_int") in r.stderr, r.story()


def test_a_handler_without_a_symbol_table_is_named_by_its_address(run) -> None:
    r = run("calls", "handler", "strerror", extra=("-s",))
    assert len(r.report) == 1, r.story()
    assert r.report[0].startswith("sigsafe: strerror() called from the handler for SIGINT (0x"), r.story()


# --- the program behaves as without the checker -------------------------------------------

@pytest.mark.parametrize("mode", ["signal", "sysv", "oldact", "reset", "sigset"])
def test_installing_handlers_keeps_its_semantics(run, mode: str) -> None:
    bare = run("semantics", mode, preload=False)
    r = run("semantics", mode)
    assert bare.code == 0 and f"{mode} ok" in bare.stdout, "the test program itself is wrong:\n" + bare.story()
    assert r.code == 0 and f"{mode} ok" in r.stdout, r.story()


def test_signal_under_std_c11_is_one_shot_so_the_second_signal_kills(run) -> None:
    bare = run("semantics", "sysv", std="c11", preload=False)
    assert bare.code == -signal.SIGUSR1, "the test program itself is wrong:\n" + bare.story()
    r = run("semantics", "sysv", std="c11")
    assert r.code == -signal.SIGUSR1 and "first" in r.stdout and "still alive" not in r.stdout, r.story()
    assert r.report == [line("fprintf", "SIGUSR1", "on_sysv")], r.story()


# --- nesting and leaving handlers ----------------------------------------------------------

def test_nested_handlers_of_two_signals_name_the_right_signal(run) -> None:
    r = run("nested", "two")
    assert r.code == 0 and "nested ok" in r.stdout, r.story()
    assert r.report == sorted([line("printf", "SIGUSR2", "on_usr2"), line("malloc", "SIGUSR1", "on_usr1")]), r.story()


def test_a_handler_nested_in_itself_with_sa_nodefer_is_followed(run) -> None:
    r = run("nested", "nodefer")
    assert r.code == 0 and "nested ok" in r.stdout and "not twice" not in r.stderr, r.story()
    assert r.report == sorted([line(f, "SIGUSR1", "on_again") for f in ("strerror", "malloc", "free")]), r.story()


def test_a_handler_that_siglongjmps_out_leaves_main_unreported(run) -> None:
    r = run("jump", "out")
    assert r.code == 0 and "back in main" in r.stdout and "jump ok" in r.stdout, r.story()
    assert r.report == [line("puts", "SIGUSR1", "on_usr1")], r.story()


def test_a_siglongjmp_back_into_an_outer_handler_reports_the_outer_signal(run) -> None:
    r = run("jump", "inner")
    assert r.code == 0 and "jump ok" in r.stdout, r.story()
    assert r.report == sorted([line("malloc", "SIGUSR2", "on_usr2"), line("free", "SIGUSR2", "on_usr2"),
                               line("puts", "SIGUSR1", "on_usr1")]), r.story()


def test_a_handler_left_by_an_inlined_longjmp_is_noticed_from_the_stack(run) -> None:
    r = run("jump", "builtin")
    assert r.code == 0 and "jump ok" in r.stdout, r.story()
    assert r.report == [line("puts", "SIGUSR1", "on_usr1")], r.story()


# --- the command --------------------------------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "SIGSAFE_LOG", "ASAN_OPTIONS")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["ASAN_OPTIONS"] = lab.SANITIZER_ENV["ASAN_OPTIONS"]
    return env


def test_the_command_prints_its_help() -> None:
    res = subprocess.run([str(CLI), "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "Usage: sigsafe" in res.stdout and "signal-safety(7)" in res.stdout
    res = subprocess.run([str(CLI)], capture_output=True, text=True)
    assert res.returncode == 2 and "Usage: sigsafe" in res.stderr


def test_the_command_reports_after_the_run_and_exits_3(compiled, kind: str, cli_env: dict[str, str]) -> None:
    exe = compiled("calls", kind)
    res = subprocess.run([str(CLI), str(exe), "handler", "malloc"], capture_output=True, text=True,
                         env=cli_env, timeout=120)
    assert res.returncode == 3, res.stderr
    assert "done" in res.stdout
    assert "malloc() called from the handler for SIGINT (on_int)" in res.stderr
    assert "free() called from the handler for SIGINT (on_int)" in res.stderr
    assert "signal-safety(7)" in res.stderr
    assert (Path(cli_env["XDG_CACHE_HOME"]) / "workbook-sigsafe").is_dir(), "the library is not cached"


def test_the_command_keeps_the_programs_status_when_all_is_well(compiled, kind: str,
                                                                 cli_env: dict[str, str]) -> None:
    exe = compiled("calls", kind)
    res = subprocess.run([str(CLI), str(exe), "main", "printf"], capture_output=True, text=True, env=cli_env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "no calls from signal handlers" in res.stderr
    res = subprocess.run([str(CLI), str(exe), "bad-usage"], capture_output=True, text=True, env=cli_env,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    res = subprocess.run([str(CLI), "--error-exitcode=0", str(exe), "handler", "printf"], capture_output=True,
                         text=True, env=cli_env, timeout=120)
    assert res.returncode == 0 and "printf() called from the handler" in res.stderr, res.stderr


def test_the_command_says_when_the_program_was_killed(compiled, kind: str, cli_env: dict[str, str]) -> None:
    exe = compiled("semantics", kind, "c11")
    res = subprocess.run([str(CLI), str(exe), "sysv"], capture_output=True, text=True, env=cli_env, timeout=120)
    assert res.returncode == 3, res.stderr
    assert "killed by SIGUSR1" in res.stderr
    assert "fprintf() called from the handler for SIGUSR1 (on_sysv)" in res.stderr


# --- errno across a handler ----------------------------------------------------------

def test_a_handler_that_changes_errno_is_reported_apart_from_the_calls(run) -> None:
    r = run("errno", "clobber")
    assert r.code == 0 and "errno in main: 9" in r.stdout, r.story()
    assert r.report == [], "a changed errno is not an unsafe call"
    calls, errnos = lab.split_sigsafe(r.log.read_text())
    assert errnos == ["sigsafe: errno: the handler for SIGUSR1 (on_usr1) changed errno (0 to 9) and did not "
                      "restore it"], r.story()


def test_a_handler_that_restores_errno_is_not_reported(run) -> None:
    r = run("errno", "restore")
    assert r.code == 0 and "errno in main: 0" in r.stdout, r.story()
    assert not r.log.exists() or not r.log.read_text().strip(), r.log.read_text()
