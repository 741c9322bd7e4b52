"""The lab VM: fetch, module build, boot, command channel, Oops detection,
`make vm`, and one clear line for each thing that can go wrong.

One VM is booted for the module (about 1.5 s under TCG); tests that need a
broken or special VM boot their own.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradelib.cli import REPO
from vm import fetch, kmod, machine
from vm.machine import BootError, CommandTimeout, Machine, VMSetupError

PY = sys.executable


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> kmod.ModuleBuild:
    fetch.ensure(quiet=True)
    return kmod.build_module(REPO / "vm" / "smoke", tmp_path_factory.mktemp("smoke"), w1=True)


@pytest.fixture(scope="module")
def vm(smoke: kmod.ModuleBuild):
    assert smoke.ok, smoke.summary()
    with Machine(files={f"/lab/{n}.ko": p for n, p in smoke.kos.items()}) as m:
        yield m


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_smoke_module_builds_without_warnings(smoke: kmod.ModuleBuild) -> None:
    assert smoke.ok, smoke.summary()
    assert set(smoke.kos) == {"hello", "oops"}
    assert not smoke.warnings, smoke.warnings


def test_insmod_shows_the_message_and_rmmod_unloads(vm: Machine) -> None:
    vm.check("insmod /lab/hello.ko")
    assert "workbook-hello: loaded" in vm.kernel_log()
    assert "hello" in vm.check("lsmod")
    vm.check("rmmod hello")
    assert "workbook-hello: unloaded" in vm.kernel_log()
    assert "hello" not in vm.check("lsmod")
    assert vm.oops() is None


def test_the_vm_runs_debians_kernel_with_high_resolution_timers(vm: Machine) -> None:
    assert vm.check("uname -r").strip() == fetch.recorded_version()
    assert "hrtimer_interrupt" in vm.check("cat /proc/timer_list")


def test_stdout_stderr_and_status_come_back_apart(vm: Machine) -> None:
    r = vm.run("echo out; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.status, r.signal) == ("out\n", "err\n", 3, None)
    r = vm.run("kill -SEGV $$")
    assert r.signal == signal.SIGSEGV and r.describe() == "killed by SIGSEGV"


def test_kernel_messages_stay_out_of_command_output(vm: Machine) -> None:
    r = vm.run("echo '<3>workbook: a kernel message' >/dev/kmsg; echo done")
    assert r.stdout == "done\n"
    assert "workbook: a kernel message" in vm.kernel_log()


def test_a_command_that_hangs_is_killed_and_named(vm: Machine) -> None:
    with pytest.raises(CommandTimeout) as e:
        vm.run("echo started; sleep 100", timeout=1)
    assert "sleep 100" in str(e.value) and e.value.result.stdout == "started\n"
    assert vm.check("echo still here") == "still here\n"


def test_large_output_is_capped_not_fatal(vm: Machine) -> None:
    r = vm.run("yes | head -c 3000000", timeout=30)
    assert r.truncated and len(r.stdout) <= 1 << 20


def test_upload_and_download_round_trip(vm: Machine) -> None:
    data = bytes(range(256)) * 1000
    vm.upload("/tmp/blob", data, mode=0o600)
    assert vm.download("/tmp/blob") == data


def test_an_oops_is_detected_with_its_excerpt(smoke: kmod.ModuleBuild) -> None:
    with Machine(files={"/lab/oops.ko": smoke.kos["oops"]}) as m:
        assert m.oops() is None
        r = m.run("insmod /lab/oops.ko")
        assert r.signal == signal.SIGKILL
        excerpt = m.oops()
        assert excerpt is not None and "NULL pointer dereference" in excerpt and "oops_init" in excerpt
        assert m.alive()


def test_qemu_is_gone_after_the_with_block_even_on_an_exception() -> None:
    with pytest.raises(RuntimeError):
        with Machine() as m:
            pid = m.proc.pid
            raise RuntimeError("test")
    assert gone(pid)


def test_qemu_dies_with_a_killed_test_process(tmp_path: Path) -> None:
    code = ("import sys, time; sys.path[:0] = [%r]\n"
            "from vm.machine import Machine\n"
            "m = Machine().start(); print(m.proc.pid, flush=True); time.sleep(100)\n") % str(REPO)
    p = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        qemu = int(p.stdout.readline())
    finally:
        p.kill()
        p.wait()
    for _ in range(100):
        if gone(qemu):
            break
        time.sleep(0.05)
    assert gone(qemu), "QEMU survived the process that started it"


def test_the_vm_boots_qboot_and_not_whatever_firmware_qemu_finds_first(tmp_path: Path) -> None:
    # Debian 13's QEMU finds SeaBIOS's microvm build first, and most boots of the guest end silently.
    qemu = machine.find_qemu()
    firmware = machine.microvm_firmware(qemu)
    assert firmware is not None and firmware.endswith("/qboot.rom"), f"no qboot.rom in `{qemu} -L help`'s folders"
    argv = machine.qemu_command(qemu, Path("vmlinux"), "initrd", "", [], accel="tcg")
    assert argv[argv.index("-bios") + 1] == firmware
    # A QEMU without qboot keeps its default firmware (no -bios that would fail to load).
    fake = tmp_path / "qemu-without-qboot"
    fake.write_text(f"#!/bin/sh\necho {tmp_path}\n")
    fake.chmod(0o755)
    assert machine.microvm_firmware(str(fake)) is None
    assert "-bios" not in machine.qemu_command(str(fake), Path("vmlinux"), "initrd", "", [], accel="tcg")


def test_a_boot_timeout_is_one_clear_line() -> None:
    with pytest.raises(BootError) as e:
        Machine(boot_timeout=0.3).start()
    msg = str(e.value)
    assert "did not boot within 0.3 s" in msg and "\n" not in msg


def test_a_kernel_that_does_not_boot_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"not a kernel")
    with pytest.raises(BootError) as e:
        Machine(kernel=bad, boot_timeout=20).start()
    assert "\n" not in str(e.value)


def test_missing_qemu_is_one_clear_line() -> None:
    with pytest.raises(VMSetupError, match="qemu-system-nowhere not found: run `make deps`"):
        Machine(qemu="qemu-system-nowhere").start()


def test_kbuild_leaves_out_what_the_host_cannot_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian 13's 6.12 on its own host: its compiler is there, pahole (BTF for modules) may not be.
    (tmp_path / ".config").write_text('CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0"\n'
                                      "CONFIG_DEBUG_INFO_BTF_MODULES=y\n")
    have = {"x86_64-linux-gnu-gcc-14", "pahole"}
    monkeypatch.setattr(kmod.shutil, "which", lambda name: f"/usr/bin/{name}" if name in have else None)
    assert kmod.compiler_vars(tmp_path) == []
    have.discard("pahole")
    assert kmod.compiler_vars(tmp_path) == ["CONFIG_DEBUG_INFO_BTF_MODULES="]
    have.discard("x86_64-linux-gnu-gcc-14")  # a Debian 12 host: the host's gcc, without gcc 14's options
    assert kmod.compiler_vars(tmp_path) == ["CC=gcc", "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT=",
                                            "CONFIG_DEBUG_INFO_BTF_MODULES="]


def test_a_module_that_does_not_build_shows_the_compiler_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Kbuild").write_text("obj-m += broken.o\n")
    (src / "broken.c").write_text('#include <linux/module.h>\nint f(void) { return undeclared; }\nMODULE_LICENSE("GPL");\n')
    b = kmod.build_module(src, tmp_path / "out")
    assert not b.ok
    assert "broken.c:2" in b.summary() and "undeclared" in b.summary()


def _fetch(tmp_path: Path, cache: Path, path_dir: Path | None = None, path: str | None = None
           ) -> subprocess.CompletedProcess:
    env = dict(os.environ, WORKBOOK_VM_CACHE=str(cache), WORKBOOK_DEBIAN_MIRROR="http://mirror.invalid/debian")
    env.pop("WORKBOOK_KERNEL", None)
    if path_dir is not None:
        env["PATH"] = f"{path_dir}:{env['PATH']}"
    if path is not None:
        env["PATH"] = path
    return subprocess.run([PY, str(REPO / "vm" / "fetch.py"), "--quiet"], env=env, capture_output=True,
                          text=True, timeout=120)


def test_no_archive_is_one_clear_line_and_leaves_no_cache(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text("#!/bin/sh\necho \"E: Failed to fetch http://mirror.invalid/x  "
                                  "Temporary failure resolving 'mirror.invalid'\" >&2\nexit 100\n")
    (fake / "apt-get").chmod(0o755)
    cache = tmp_path / "cache"
    r = _fetch(tmp_path, cache, fake)
    assert r.returncode == 1
    assert r.stderr.startswith("fetch: cannot download from Debian's package archive") and r.stderr.count("\n") == 1
    assert "Temporary failure resolving" in r.stderr, r.stderr
    # only the private apt's configuration is left: no kernel folder, no record, no package list
    assert sorted(p.name for p in cache.iterdir()) == ["apt-bookworm"], list(cache.iterdir())
    assert not list((cache / "apt-bookworm" / "state").glob("lists/*Packages*"))


def test_a_corrupt_cache_is_not_trusted(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    version = fetch.recorded_version()
    (cache / version).mkdir(parents=True)
    (cache / "current").write_text(version + "\n")
    (cache / version / "vmlinux").write_bytes(b"half a kernel")
    (cache / version / "complete").write_text("999\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text("#!/bin/sh\necho 'E: no network here' >&2\nexit 100\n")
    (fake / "apt-get").chmod(0o755)
    r = _fetch(tmp_path, cache, fake)
    assert r.returncode == 1 and "cannot download" in r.stderr, r.stderr
    assert not (cache / version).exists(), "the corrupt folder must be removed, not reused"


def test_the_mirror_comes_from_the_hosts_debian_sources_and_skips_what_apt_skips(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text("# deb http://old.invalid/debian bookworm main\n")
    (etc / "sources.list.d" / "thirdparty.sources").write_text(
        "Types: deb\nURIs: https://vendor.invalid/apt\nSuites: nodistro\nComponents: main\n")
    (etc / "sources.list.d" / "off.list.disabled").write_text("deb http://disabled.invalid/debian bookworm main\n")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://security.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n")
    assert fetch.host_mirrors(etc) == ("http://mirror.invalid/debian", "http://security.invalid/debian-security")
    # the one-line format, no security entry: the archive's URL with -security, as Debian's mirrors lay it out
    (etc / "sources.list.d" / "debian.sources").unlink()
    (etc / "sources.list").write_text("deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian trixie main\n")
    assert fetch.host_mirrors(etc) == ("http://mirror.invalid/debian", "http://mirror.invalid/debian-security")
    # Ubuntu's sources are not Debian's archive: the error names the variable to set and the supported hosts
    (etc / "sources.list").write_text("deb http://archive.invalid/ubuntu noble main universe\n")
    assert fetch.host_mirrors(etc) is None
    env = os.environ.pop(fetch.MIRROR_VAR, None)
    try:
        with pytest.raises(fetch.FetchError, match="WORKBOOK_DEBIAN_MIRROR.*dev container"):
            fetch.mirrors(etc)
        os.environ[fetch.MIRROR_VAR] = "http://given.invalid/debian/"
        assert fetch.mirrors(etc) == ("http://given.invalid/debian", "http://given.invalid/debian-security")
    finally:
        os.environ.pop(fetch.MIRROR_VAR, None)
        if env is not None:
            os.environ[fetch.MIRROR_VAR] = env


def test_a_host_without_apt_is_told_which_hosts_are_supported(tmp_path: Path) -> None:
    r = _fetch(tmp_path, tmp_path / "cache", path=str(tmp_path))  # a PATH with no apt-get
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "this host has no apt" in r.stderr and "Debian 12 and Debian 13" in r.stderr and \
        "dev container" in r.stderr, r.stderr


def _fake_cache(cache: Path, abi: str, package: str) -> Path:
    """A cache folder fetch.is_complete trusts, its vmlinux a kernel banner and nothing else."""
    d = cache / abi
    common = d / "root/usr/src" / f"linux-headers-{abi.rsplit('-', 1)[0]}-common"
    common.mkdir(parents=True)
    (common / "Makefile").write_text("")
    (d / "root/usr/src" / f"linux-headers-{abi}").mkdir()
    (d / "root/usr/src" / f"linux-headers-{abi}" / "Makefile").write_text(f"include /usr/src/{common.name}/Makefile\n")
    os.symlink(f"root/usr/src/linux-headers-{abi}", d / "kdir")
    (d / "vmlinux").write_bytes(b"\x7fELF" + f"Linux version {abi} (debian-kernel@lists.debian.org) (gcc) #1 SMP "
                                f"PREEMPT_DYNAMIC Debian {package} (2026-01-01)\n".encode())
    (d / "busybox").write_bytes(b"")
    (d / "complete").write_text(f"{(d / 'vmlinux').stat().st_size}\n")
    return d


def test_another_version_of_the_series_is_said_in_one_line_and_an_old_cache_is_adopted_by_its_banner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "CACHE", tmp_path)
    monkeypatch.delenv("WORKBOOK_KERNEL", raising=False)
    checked = fetch.spec("bookworm")["checked"]
    d = _fake_cache(tmp_path, "6.1.0-99-amd64", "6.1.999-1")
    (tmp_path / "current").write_text("6.1.0-99-amd64\n")
    # fetched before vm/kernels.json (no guest.json): trusted because its own banner says 6.1, no apt asked
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert fetch.ensure(quiet=True) == d
    assert fetch.guest_info(d)["package"] == "6.1.999-1"
    line = fetch.guest_line()
    assert line.startswith("guest kernel: 6.1.0-99-amd64, Debian 12 (bookworm) package 6.1.999-1; ") and \
        f"checked on {checked} of the 6.1 series" in line and "\n" not in line, line
    # the version the workbook was checked on: no note
    monkeypatch.setattr(fetch, "kernels", lambda: {"default": "bookworm", "kernels": {"bookworm": dict(
        debian=12, suite="bookworm", series="6.1", checked="6.1.999-1")}})
    assert "checked" not in fetch.guest_line()
    # a cache of another series is not taken for the named one
    other = _fake_cache(tmp_path, "6.12.1+deb13-amd64", "6.12.1-1")
    assert not fetch.verified(other, fetch.spec("bookworm"))


def test_a_series_that_left_the_suite_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-cache").write_text("#!/bin/sh\necho 'linux-image-amd64'\necho '  Depends: linux-image-6.2.0-1-amd64'\n")
    (fake / "apt-cache").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    monkeypatch.setattr(fetch, "CACHE", tmp_path)
    with pytest.raises(fetch.FetchError, match=r"the 6\.1 series has left Debian bookworm .*6\.2\.0-1-amd64.*vm/kernels\.json"):
        fetch.resolve(fetch.spec("bookworm"))


def test_make_vm_gives_a_shell_and_leaves_no_qemu() -> None:
    p = subprocess.Popen([PY, str(REPO / "vm" / "shell.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    seen = b""

    def until(marker: bytes, limit: float = 60) -> None:
        nonlocal seen
        end = time.monotonic() + limit
        while marker not in seen:
            assert time.monotonic() < end, f"no {marker!r} from the VM shell; it printed:\n{seen[-2000:]!r}"
            chunk = os.read(p.stdout.fileno(), 4096)
            assert chunk, f"the VM shell ended early:\n{seen[-2000:]!r}"
            seen += chunk

    try:
        until(b"vm:/lab# ")
        p.stdin.write(b"echo MARK-$((6*7)); uname -r\n")
        p.stdin.flush()
        until(b"MARK-42")
        until(fetch.recorded_version().encode())
        p.stdin.write(b"poweroff\n")
        p.stdin.flush()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    out = subprocess.run(["pgrep", "-s", str(p.pid)], capture_output=True, text=True).stdout
    assert not out.strip(), f"processes left behind: {out}"
