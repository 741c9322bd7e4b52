"""Where in the student's source an Oops happened: kernel addresses to file:line.

An Oops names code as `function+0xOFFSET/0xSIZE [module]`: the `RIP:` line
(where the CPU was) and the frames of the call trace.  The `RIP:` function is
not always the student's own (a tail call into fasync_helper() leaves the
driver out of the trace), so every frame in the student's module is mapped,
not only the first.  The module is built with debug information (Debian's
kernel config has CONFIG_DEBUG_INFO), so binutils can do it without the
kernel's faddr2line script, which Debian's headers do not ship:

    objdump -t module.ko      function -> (section, offset of the function)
    addr2line -e module.ko -j SECTION -i OFFSET+0xOFFSET   -> file:line

Frames in the kernel itself stay as symbols.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

FRAME = re.compile(r"(?P<fn>[A-Za-z0-9_.]+)\+0x(?P<off>[0-9a-f]+)/0x[0-9a-f]+ \[(?P<mod>[A-Za-z0-9_]+)\]")


def _functions(ko: Path) -> dict[str, tuple[str, int]]:
    """{function: (section, address within the section)} from objdump -t."""
    res = subprocess.run(["objdump", "-t", str(ko)], capture_output=True, text=True, timeout=30)
    funcs: dict[str, tuple[str, int]] = {}
    for line in res.stdout.splitlines():
        m = re.match(r"^([0-9a-f]{16})\s.{7}\s(\S+)\s+[0-9a-f]+\s+(\S+)$", line)
        if m and m.group(2).startswith(".text"):
            funcs.setdefault(m.group(3), (m.group(2), int(m.group(1), 16)))
    return funcs


def locate(ko: Path, fn: str, off: int, funcs: dict[str, tuple[str, int]] | None = None,
           return_address: bool = True) -> str | None:
    """`file.c:LINE` of fn+off in the module (and the inlined code it was in); None when unknown."""
    funcs = funcs if funcs is not None else _functions(ko)
    if fn not in funcs:
        return None
    section, base = funcs[fn]
    # A frame's address is where the call returns to: one byte back is the call's own line.
    addr = base + (max(off - 1, 0) if return_address else off)
    res = subprocess.run(["addr2line", "-e", str(ko), "-j", section, "-i", hex(addr)],
                         capture_output=True, text=True, timeout=30)
    places = [re.sub(r"^.*/", "", re.sub(r"\s*\(discriminator \d+\)", "", ln.strip()))
              for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith("??")]
    if not places:
        return None
    # addr2line -i: the innermost (inlined) code first, the function's own line last
    own, inner = places[-1], places[:-1]
    return own + (f", in inlined code at {inner[0]}" if inner else "")


def annotate(text: str, module: str, ko: Path | None) -> str:
    """Each `fn+0xOFF/0xSIZE [module]` of the student's module followed by `(file.c:LINE)`."""
    if ko is None or not ko.is_file() or f"[{module}]" not in text:
        return text
    try:
        funcs = _functions(ko)
    except (OSError, subprocess.SubprocessError):
        return text
    cache: dict[tuple[str, int, bool], str | None] = {}

    def mapped(m: re.Match[str]) -> str:
        if m.group("mod") != module:
            return m.group(0)
        is_rip = text[max(0, m.start() - 10):m.start()].rstrip().endswith(("RIP: 0010:", "RIP:"))
        key = (m.group("fn"), int(m.group("off"), 16), not is_rip)
        if key not in cache:
            try:
                cache[key] = locate(ko, key[0], key[1], funcs, return_address=key[2])
            except (OSError, subprocess.SubprocessError):
                cache[key] = None
        where = cache[key]
        return f"{m.group(0)} ({where})" if where else m.group(0)

    return FRAME.sub(mapped, text)
