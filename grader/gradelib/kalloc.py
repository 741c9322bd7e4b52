"""Does a driver free what it allocated?  Asked of the kernel: the kmem tracepoints.

A leak changes nothing a program can see, so no black-box test finds one.  The kernel's
kmem:kmalloc event records every kmalloc()/kzalloc() with its call site (the return address, in the
module's text for the module's own calls) and the pointer; kmem:kmem_cache_alloc the same for
kmem_cache_alloc(); kmem:kfree and kmem:kmem_cache_free, every free with the pointer.
start_script() keeps the module's allocations only (an event filter on call_site, the module's text
range from /proc/modules) and every free; after the scene, leaked() lists the pointers allocated and
never freed.  Pointers are printed hashed (%p), the same hash for the same pointer within a boot,
which is all the matching needs.  Everything runs in a tracefs instance of its own
(instances/kalloc), beside sigtrace's and kcontext's.

Which allocators that covers (6.1's kmem events; FOLLOWED, DEVRES, UNFOLLOWED below, by the
module's imports):
- followed: the kmalloc family whose event carries the module's own call site: kmalloc, kzalloc,
  kcalloc, kmalloc_array (kmalloc_trace, __kmalloc, kmalloc_large and their _node forms), krealloc,
  kmemdup, kstrdup, memdup_user, and kmem_cache_alloc*;
- devm_*: devres frees them when the device is unbound, which the test's unplug does, so they cannot
  outlive it; devm_kmalloc's own allocation is recorded with the module's call site and its free at
  the unbind, and the others are not the driver's to free;
- not followed: vmalloc, vzalloc, __vmalloc, vcalloc (6.1 has no vmalloc event), kvmalloc and
  kvzalloc (their kmalloc is recorded with kvmalloc_node's call site, not the module's; a large one
  is a vmalloc), kasprintf (likewise), and kfree_rcu() (the batched free records no event).  A
  driver that imports one of them fails the check with a message naming it (cannot_follow()):
  points are never given for a record that could not have shown the leak.  Nor are they when the
  trace buffer overran (leaked()'s third value).
"""
from __future__ import annotations

import re

TRACEFS = "/sys/kernel/tracing"
INSTANCE = f"{TRACEFS}/instances/kalloc"

# The module's imports whose allocations the events record with its call site (see above).
FOLLOWED = frozenset({
    "kmalloc_trace", "kmalloc_node_trace", "__kmalloc", "__kmalloc_node", "__kmalloc_node_track_caller",
    "kmalloc_large", "kmalloc_large_node", "krealloc", "kmemdup", "kmemdup_nul", "kstrdup", "kstrndup",
    "memdup_user", "memdup_user_nul", "kmem_cache_alloc", "kmem_cache_alloc_node", "kmem_cache_alloc_lru",
})
# Freed by devres at unbind (the test unplugs the device before the last close).
DEVRES = frozenset({"devm_kmalloc", "devm_kmemdup", "devm_kstrdup", "devm_krealloc", "devm_kasprintf"})
# import -> (what the student wrote, why the leak check cannot follow it)
UNFOLLOWED: dict[str, tuple[str, str]] = {
    **{f: (f"{f}()", "the kernel records no event for a vmalloc allocation") for f in
       ("vmalloc", "vzalloc", "vmalloc_node", "vzalloc_node", "vmalloc_array", "vcalloc", "__vmalloc",
        "vmalloc_user", "vmalloc_32")},
    "kvmalloc_node": ("kvmalloc()/kvzalloc()", "its kmalloc is recorded as kvmalloc's own, not your driver's, "
                      "and a large one is a vmalloc, of which the kernel records nothing"),
    "__kvmalloc_node": ("kvmalloc()/kvzalloc()", "its kmalloc is recorded as kvmalloc's own, not your driver's, "
                        "and a large one is a vmalloc, of which the kernel records nothing"),  # 6.12's name
    "kvrealloc": ("kvrealloc()", "its kmalloc is recorded as kvrealloc's own, not your driver's"),
    "kasprintf": ("kasprintf()", "its kmalloc is recorded as kasprintf's own, not your driver's"),
    "kvasprintf": ("kvasprintf()", "its kmalloc is recorded as kvasprintf's own, not your driver's"),
    "kvfree_call_rcu": ("kfree_rcu()", "the kernel frees its objects in batches that record no event"),
    "kfree_call_rcu": ("kfree_rcu()", "the kernel frees its objects in batches that record no event"),
}


def cannot_follow(imports: list[str]) -> str:
    """Why the leak check cannot vouch for a module with these imports (nm -u), or "" when it can."""
    found = [UNFOLLOWED[f.removesuffix("_noprof")] for f in sorted(imports) if f.removesuffix("_noprof") in UNFOLLOWED]
    if not found:
        return ""
    what = ", ".join(dict.fromkeys(w for w, _ in found))
    why = "; ".join(dict.fromkeys(f"{w}: {y}" for w, y in found))
    return (f"The driver allocates or frees with {what}, which the leak check cannot follow ({why}), so it cannot "
            f"tell whether the last close frees the state: use kzalloc() for the state and kfree() to free it "
            f"(the kmalloc family and kmem_cache_alloc() are followed).")


ALLOCS = ("kmalloc", "kmem_cache_alloc")  # the events of the module's allocations (filtered on call_site)
FREES = ("kfree", "kmem_cache_free")  # and of every free


def start_script(lo: int, hi: int) -> str:
    """From now on, record the kmalloc()s and kmem_cache_alloc()s made from [lo, hi) and every free."""
    ev = f"{INSTANCE}/events/kmem"
    return "; ".join([
        f"mountpoint -q {TRACEFS} || mount -t tracefs nodev {TRACEFS}",
        f"mkdir -p {INSTANCE}",
        f"echo 0 > {INSTANCE}/tracing_on",
        f"echo 8192 > {INSTANCE}/buffer_size_kb",
        f"echo > {INSTANCE}/trace",
        *(f"echo 'call_site >= {lo:#x} && call_site < {hi:#x}' > {ev}/{e}/filter" for e in ALLOCS),
        *(f"echo 1 > {ev}/{e}/enable" for e in (*ALLOCS, *FREES)),
        f"echo 1 > {INSTANCE}/tracing_on",
    ])


def read_script() -> str:
    """Stop recording; the records, then a line saying whether the buffer overran."""
    off = "; ".join(f"echo 0 > {INSTANCE}/events/kmem/{e}/enable" for e in (*ALLOCS, *FREES))
    return (f"echo 0 > {INSTANCE}/tracing_on; cat {INSTANCE}/trace; {off}; "
            f"echo \"overrun $(grep -h '^overrun' {INSTANCE}/per_cpu/cpu*/stats | awk '{{s += $2}} END {{print s + 0}}')\"")


_EVENT = re.compile(r"\b(kmalloc|kmem_cache_alloc|kfree|kmem_cache_free): call_site=(\S+).*? ptr=(\S+)")


def leaked(text: str) -> tuple[list[str], int, bool]:
    """From read_script()'s output: the call sites of the allocations never freed, the number of
    allocations seen, and whether the record is complete (no overrun)."""
    live: dict[str, str] = {}
    seen = 0
    for m in _EVENT.finditer(text):
        kind, site, ptr = m.groups()
        if kind in ALLOCS:
            live[ptr] = site
            seen += 1
        else:
            live.pop(ptr, None)
    over = re.search(r"^overrun (\d+)$", text, re.M)
    return sorted(live.values()), seen, bool(over) and over.group(1) == "0"  # type: ignore[union-attr]
