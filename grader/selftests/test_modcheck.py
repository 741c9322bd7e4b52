"""The VM labs' checks on what a module imports and allocates, without a VM: the allow-lists of
gradelib/modcheck.py against the solutions' and the starter's drivers (built with kbuild, cached),
and gradelib/kalloc.py's verdicts on imports and its parser.  The VM side is in the hostile cases
(lab4-rewrite-helper, lab5-trace-off, lab5-vzalloc-leak)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from gradelib import kalloc
from gradelib.cli import REPO
from gradelib.modcheck import LAB_NEEDS, REFUSED, check_imports

if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from vm.kmod import KmodError, build_module  # noqa: E402

DRIVER_LABS = ["03-fasync-button", "04-sigio-bursts", "05-realtime-signals"]


@pytest.mark.parametrize("edition", ["solutions", "labs"])
@pytest.mark.parametrize("folder", DRIVER_LABS)
def test_the_solutions_and_the_starter_drivers_are_on_their_labs_list(edition: str, folder: str,
                                                                       tmp_path: Path) -> None:
    try:
        b = build_module(REPO / edition / folder, tmp_path, w1=True, module="button_driver", cache=True)
    except KmodError as e:
        pytest.skip(f"no kernel headers: {e}")
    assert b.ok, b.summary()
    c = check_imports(b.kos["button_driver"], int(folder[:2]))
    assert c.ok, f"{edition}/{folder}: {c.refused or c.error}"
    assert c.symbols  # what the leak check reads


def test_no_refused_family_is_on_a_labs_list() -> None:
    attacks = ["call_usermodehelper", "filp_open", "dentry_open", "lookup_one_len_unlocked", "kernel_write",
               "iov_iter_kvec", "fput", "trace_array_set_clr_event", "trace_array_get_by_name", "register_kprobe",
               "kallsyms_lookup_name", "commit_creds", "console_printk", "kill_pid", "send_sig", "kernel_restart"]
    for sym in attacks:
        assert any(re.fullmatch(pat, sym) for pat, _ in REFUSED), sym
        for lab, needs in LAB_NEEDS.items():
            assert not needs.fullmatch(sym), f"{sym} is on lab {lab}'s list"


def test_an_allocator_the_kmem_events_cannot_follow_is_named() -> None:
    assert kalloc.cannot_follow(["kmalloc_trace", "kfree", "devm_kmalloc", "kmem_cache_alloc"]) == ""
    why = kalloc.cannot_follow(["kfree", "vzalloc"])
    assert "vzalloc()" in why and "cannot follow" in why and "kzalloc()" in why
    assert "kvmalloc()/kvzalloc()" in kalloc.cannot_follow(["kvmalloc_node"])
    assert "kfree_rcu()" in kalloc.cannot_follow(["kvfree_call_rcu"])


def test_leaked_pairs_kmalloc_and_kmem_cache_allocations_with_their_frees() -> None:
    trace = "\n".join([
        "  insmod-1 [000] .....  1.0: kmalloc: call_site=button_probe+0x2c ptr=00000000aaaa bytes_req=512",
        "  insmod-1 [000] .....  1.1: kmem_cache_alloc: call_site=button_open+0x10 ptr=00000000bbbb bytes_req=64",
        "  insmod-1 [000] .....  1.2: kmem_cache_free: call_site=button_release+0x8 ptr=00000000bbbb name=x",
        "  insmod-1 [000] .....  1.3: kmalloc: call_site=button_open+0x20 ptr=00000000cccc bytes_req=64",
        "  insmod-1 [000] .....  1.4: kfree: call_site=button_release+0x9 ptr=00000000cccc",
        "overrun 0",
    ])
    assert kalloc.leaked(trace) == (["button_probe+0x2c"], 3, True)
    assert kalloc.leaked(trace.replace("overrun 0", "overrun 12"))[2] is False
