"""The rules of gradelib/kcontext.py on counted calls (no VM: the VM side is in the hostile cases
lab3-spin-lock-in-read and lab3-cansleep-in-irq), and the parser on the kernel's hist format."""
from __future__ import annotations

from gradelib import kcontext
from gradelib.kcontext import HARDIRQ, IRQS_OFF, Call

LOCK = 0xffff888006106a88
NAMES = {0x10: "button_irq()", 0x20: "button_read()", 0x30: "button_open()"}


def where(addr: int) -> str:
    return NAMES.get(addr, hex(addr))


def irq_take() -> Call:
    return Call("kcx_spin", 0x10, flags=IRQS_OFF | HARDIRQ, preempt=1, lock=LOCK, count=5)


def test_the_solutions_pattern_is_clean() -> None:
    calls = [irq_take(), Call("kcx_spin_irq", 0x20, lock=LOCK, count=3), Call("kcx_spin_irq", 0x30, lock=LOCK, count=1),
             Call("kcx_kmalloc", 0x30, gfp=0xcc0, count=1), Call("kcx_copy_to", 0x20, count=3)]
    f = kcontext.analyse(calls, where)
    assert f.problems == [] and f.irq_locks == {LOCK} and f.process_takes == {LOCK: 4}


def test_spin_lock_with_interrupts_on_on_the_handlers_lock_is_a_deadlock() -> None:
    f = kcontext.analyse([irq_take(), Call("kcx_spin", 0x20, lock=LOCK, count=3)], where)
    assert len(f.problems) == 1 and f.problems[0].startswith("button_read() takes a lock with spin_lock()")


def test_spin_lock_with_interrupts_off_or_on_another_lock_is_fine() -> None:
    calls = [irq_take(), Call("kcx_spin", 0x20, flags=IRQS_OFF, lock=LOCK), Call("kcx_spin", 0x30, lock=LOCK + 64)]
    assert kcontext.analyse(calls, where).problems == []


def test_read_lock_in_process_context_is_fine_when_the_handler_only_reads() -> None:
    calls = [Call("kcx_read", 0x10, flags=HARDIRQ | IRQS_OFF, lock=LOCK), Call("kcx_read", 0x20, lock=LOCK)]
    assert kcontext.analyse(calls, where).problems == []
    calls.append(Call("kcx_write", 0x10, flags=HARDIRQ | IRQS_OFF, lock=LOCK))
    assert kcontext.analyse(calls, where).problems, "a writer in the handler makes a reader with IRQs on deadlock"


def test_may_sleep_calls_in_atomic_context_are_named_once_each() -> None:
    calls = [Call("kcx_mutex", 0x10, flags=HARDIRQ | IRQS_OFF), Call("kcx_mutex", 0x10, preempt=1),
             Call("kcx_kmalloc", 0x30, preempt=1, gfp=0xcc0), Call("kcx_kmalloc", 0x30, preempt=1, gfp=0x820),
             Call("kcx_copy_to", 0x20, preempt=1)]
    f = kcontext.analyse(calls, where)
    assert len(f.problems) == 3, f.problems
    assert f.problems[0].startswith("button_irq() calls mutex_lock() in the interrupt handler")
    assert any("kmalloc()/kzalloc() with GFP_KERNEL" in p and "while holding a spinlock" in p for p in f.problems)
    assert any(p.startswith("button_read() calls copy_to_user() while holding a spinlock") for p in f.problems)


def test_the_hist_format_is_parsed() -> None:
    text = ("== kcx_spin\n# trigger info: ...\n"
            "{ lock: 0xffff888006106a88, caller: 0xffffffffc020d530, common_flags:          9 } hitcount:        42\n"
            "== kcx_kmalloc\n"
            "{ caller: 0xffffffffc020d4a2, common_preempt_count:          0, gfp:       3264 } hitcount:          1\n")
    calls = kcontext.parse(text)
    assert calls == [Call("kcx_spin", 0xffffffffc020d530, flags=9, lock=LOCK, count=42),
                     Call("kcx_kmalloc", 0xffffffffc020d4a2, preempt=0, gfp=3264, count=1)]
