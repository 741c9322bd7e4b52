"""What a student's kernel module may call, checked before it is loaded.

A module runs in ring 0: once loaded, nothing in the VM is out of its reach.
So before `insmod` the grader reads the kernel symbols the .ko imports (its
undefined symbols, `nm -u`) and checks them against an allow-list: what that
lab's driver needs, taken from the reference driver (solutions/0N-*, `nm -u`
of its .ko) and from the variants a student may reasonably write (other
locks, timers or workqueues, other allocators, other printk and
copy_to_user() forms).  Anything else is refused: the module is not loaded,
the lab's tests that need it fail, and the message names each function and
why.  A few families get a reason of their own, because they are what an
attack on the grader looks like: run programs in user space, open, read or
write files (filp_open, dentry_open, lookup_one_len*, kernel_write, vfs_*),
hook or patch the kernel (kprobes, ftrace, kallsyms, text_poke), switch the
kernel's tracing on or off (trace_array_*: the grader reads its events),
change credentials, hide or rewrite the kernel's log, power the machine off,
or send signals directly instead of through kill_fasync().  The rest: "not on
lab N's list of what its driver needs".  There is no "loaded and flagged for
review" any more: an attack needs one import the list lacks, and a flag is
read after the points were given.

What remains (the residual risk, README "Containment"): a module written to
attack the grader can still reach kernel memory by other means (raw pointers,
inline assembly, addresses read from /proc/kallsyms, a function pointer of a
structure it can reach), so the VM is the outer boundary: it is thrown away
after each lab, it has no network and no disk, the grader's helpers are
checked against their hashes before each test (gradelib/vmlab.py), and the
grader reads the kernel's taint flags, which no exported function can clear,
to see warnings and oopses a module tried to hide.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# (pattern, why): the reason given for an import of these families (none is on any lab's list)
REFUSED: list[tuple[str, str]] = [
    (r"call_usermodehelper.*|__request_module|request_module.*|kernel_execve", "runs programs in user space"),
    (r"filp_open|filp_close|file_open_root|file_open_name|kern_path.*|kernel_read.*|kernel_write|__kernel_write|"
     r"vfs_.*|do_truncate|kernel_file_open|dentry_open|lookup_one.*|lookup_positive_unlocked|try_lookup_one_len|"
     r"d_path|path_get|path_put|notify_change|iov_iter_.*|fget.*|fput|__fdget.*|get_fs_root|"
     r"kernel_path_.*|user_path_at_empty|open_exec|d_find_alias|d_lookup|simple_.*dentry.*|"
     r"generic_file_write_iter|generic_perform_write|filemap_.*|__filemap_.*", "opens, reads or writes files"),
    (r"register_k(ret)?probes?|unregister_k(ret)?probes?|register_ftrace_.*|unregister_ftrace_.*|ftrace_set_.*|"
     r"kallsyms_.*|__symbol_get|symbol_put_addr|text_poke.*|set_memory_.*|set_direct_map_.*|"
     r"tracepoint_probe_(un)?register.*|register_trace_.*|static_key_.*|bpf_.*|"
     r"register_(module|die|reboot|panic)_notifier|atomic_notifier_chain_register",
     "hooks into or patches the kernel"),
    (r"trace_array_.*|trace_set_clr_event|tracing_(on|off|is_on)|trace_printk_init_buffers|__trace_(b)?printk|"
     r"__trace_(b)?puts|trace_event_.*|ftrace_dump|tracing_snapshot.*|__tracepoint_.*|__traceiter_.*",
     "switches the kernel's tracing on or off, or writes into it (the grader reads its events)"),
    (r"commit_creds|prepare_kernel_cred|prepare_creds|override_creds|revert_creds|abort_creds",
     "changes a process's credentials"),
    (r"console_.*|kmsg_dump.*|printk_ratelimit_state|log_buf.*|vprintk_emit|devkmsg_.*|do_syslog|"
     r"suppress_printk|oops_in_progress|panic_notifier_list|printk_timed_ratelimit",
     "changes or hides the kernel's log or state"),
    (r"kernel_power_off|kernel_restart|kernel_halt|orderly_.*|emergency_restart|machine_.*|ctrl_alt_del|panic",
     "powers off or restarts the machine"),
    (r"kill_pid.*|kill_pgrp|send_sig.*|force_sig.*|group_send_sig_info|do_send_sig_info|__kill_pgrp_info|"
     r"kill_pid_usb_asyncio", "sends signals to processes itself (the labs' drivers signal through kill_fasync())"),
]

# What every module built with these compilers imports (code generation, hardening), and what a driver's
# messages and WARN()s use.
_COMMON = [
    r"__fentry__|__stack_chk_fail|__x86_return_thunk|__x86_indirect_thunk_.*|__x86_indirect_call_thunk_.*|"
    r"__list_add_valid(_or_report)?|__list_del_entry_valid(_or_report)?|__ubsan_handle_.*|__warn_printk|__might_sleep|__might_fault|"
    r"__might_resched|__SCT__(might_resched|cond_resched|preempt_schedule.*)|__SCK__(might_resched|"
    r"cond_resched|preempt_schedule.*)|__cond_resched.*|_cond_resched|preempt_schedule.*|__preempt_count|"
    r"__per_cpu_offset|pcpu_hot|current_task|cpu_number|nr_cpu_ids|__cpu_online_mask|__cpu_possible_mask|"
    r"__num_online_cpus|refcount_warn_saturate|__check_object_size|__fortify_panic|fortify_panic|"
    r"__read_overflow.*|__write_overflow.*|__stack_chk_guard|add_taint|"
    r"pv_ops",  # local_irq_save(), local_irq_disable() and the like, on a kernel built with paravirt
    r"_printk|printk|__dynamic_pr_debug|__dynamic_dev_debug|_dev_(emerg|alert|crit|err|warn|notice|info)|"
    r"_dev_printk|dev_err_probe|__pr_(emerg|alert|crit|err|warn|notice|info)",
]

# Lab 3: a platform driver for the board's button (its GPIO and IRQ), a misc (or char) device, a ring
# per open file under a spinlock (or a mutex), blocking read, poll, fasync, copy_to_user().
_LAB3 = _COMMON + [
    r"__platform_driver_register|platform_driver_unregister|__platform_register_drivers|"
    r"platform_unregister_drivers|platform_get_irq|platform_get_irq_optional|platform_get_resource",
    r"misc_register|misc_deregister|__register_chrdev|__unregister_chrdev|alloc_chrdev_region|"
    r"register_chrdev_region|unregister_chrdev_region|cdev_(init|add|del|alloc|device_add|device_del)|"
    r"__class_create|class_create|class_destroy|device_create|device_destroy|put_device|get_device",
    r"devm_gpiod_get(_optional|_index)?|gpiod_get(_optional|_index)?|gpiod_put|devm_gpiod_put|"
    r"gpiod_get_value(_cansleep)?|gpiod_get_raw_value(_cansleep)?|gpiod_to_irq|gpiod_direction_input|"
    r"gpiod_is_active_low|gpiod_set_debounce|gpiod_cansleep",
    r"devm_request_threaded_irq|devm_request_any_context_irq|request_threaded_irq|request_any_context_irq|"
    r"free_irq|devm_free_irq|disable_irq|disable_irq_nosync|enable_irq|synchronize_irq|irq_set_irq_type",
    r"_raw_(spin|read|write)_.*|__raw_spin_lock_init|__spin_lock_init|__rwlock_init|__mutex_init|"
    r"mutex_(lock|unlock|trylock|lock_interruptible|lock_killable|is_locked)|__init_rwsem|"
    r"(down|up)_(read|write)|down_(read|write)_(trylock|killable|interruptible)|down|up|down_interruptible|"
    r"down_killable|down_trylock|down_timeout|sema_init|__rcu_read_(un)?lock|synchronize_rcu|call_rcu|"
    r"kvfree_call_rcu|kfree_call_rcu|rcu_barrier",
    r"__init_waitqueue_head|__wake_up|__wake_up_sync|__wake_up_sync_key|__wake_up_locked|"
    r"__wake_up_locked_key|init_wait_entry|prepare_to_wait|prepare_to_wait_event|prepare_to_wait_exclusive|"
    r"finish_wait|add_wait_queue|add_wait_queue_exclusive|remove_wait_queue|autoremove_wake_function|"
    r"default_wake_function|woken_wake_function|wait_woken|schedule|schedule_timeout.*|io_schedule|"
    r"complete|complete_all|wait_for_completion.*|__init_swait_queue_head",
    r"fasync_helper|kill_fasync|_copy_to_user|_copy_from_user|copy_user_generic_.*|copy_user_enhanced_.*|"
    r"__get_user_.*|__put_user_.*|clear_user|__clear_user|simple_read_from_buffer|"
    r"no_llseek|noop_llseek|nonseekable_open|stream_open",
    # allocation: the kmalloc family, kmem_cache, vmalloc and kvmalloc, devm (gradelib/kalloc.py says
    # which of them the leak check of lab 5 can follow)
    # (6.12 names the allocators' entry points NAME_noprof: the same functions, with allocation profiling)
    r"(?:kmalloc_caches|kmalloc_trace|kmalloc_node_trace|kmalloc_large|kmalloc_large_node|__kmalloc|"
    r"__kmalloc_cache|__kmalloc_cache_node|__kmalloc_large|__kmalloc_large_node|"
    r"__kmalloc_node|__kmalloc_node_track_caller|kmalloc_size_roundup|krealloc|kfree|kfree_sensitive|kvfree|"
    r"kmemdup|kmemdup_nul|kstrdup|kstrndup|kmem_cache_(create|create_usercopy|alloc|alloc_node|alloc_lru|free|"
    r"destroy)|vmalloc|vzalloc|vmalloc_node|vzalloc_node|vmalloc_array|vcalloc|__vmalloc|vfree|"
    r"kvmalloc_node|__kvmalloc_node|kvrealloc|devm_kmalloc|devm_kfree|devm_kmemdup|devm_kstrdup|devm_krealloc)"
    r"(?:_noprof)?",
    r"devm_add_action|devm_remove_action|devm_release_action|__devm_add_action|"
    r"ktime_get|ktime_get_ts64|ktime_get_real.*|ktime_get_mono_fast_ns|ktime_get_boot.*|ktime_get_raw.*|"
    r"ktime_get_with_offset|jiffies|jiffies_64|__msecs_to_jiffies|__usecs_to_jiffies|jiffies_to_msecs|"
    r"jiffies_to_usecs|ns_to_timespec64|__module_get|module_put|try_module_get|"
    r"mem(cpy|set|move|cmp)|__memcpy|__memset|__memmove|str(len|nlen|cmp|ncmp|scpy|lcpy|cpy|ncpy|chr|rchr)|"
    r"snprintf|scnprintf|sprintf|vsnprintf|vscnprintf|sscanf|kstrto.*|_ctype|__task_pid_nr_ns|pid_vnr|"
    r"param_ops_.*|param_array_ops|param_get_.*|param_set_.*",
]

# Lab 4: debounce, with a timer (hrtimer, timer_list, a delayed work) restarted at every edge.
_LAB4 = _LAB3 + [
    r"hrtimer_(init|start_range_ns|cancel|try_to_cancel|forward|active|sleeper_start_expires|"
    r"get_next_event)|__hrtimer_get_remaining|init_timer_key|mod_timer|mod_timer_pending|timer_reduce|"
    r"add_timer|del_timer|del_timer_sync|try_to_del_timer_sync|timer_delete.*|timer_shutdown.*|"
    r"system_wq|system_highpri_wq|system_long_wq|system_unbound_wq|system_freezable_wq|queue_work_on|"
    r"queue_delayed_work_on|mod_delayed_work_on|delayed_work_timer_fn|__flush_workqueue|flush_work|"
    r"flush_delayed_work|cancel_work|cancel_work_sync|cancel_delayed_work|cancel_delayed_work_sync|"
    r"alloc_workqueue|destroy_workqueue|tasklet_init|tasklet_setup|tasklet_kill|__tasklet_schedule|"
    r"__tasklet_hi_schedule|msleep|msleep_interruptible|usleep_range_state|__udelay|__const_udelay|__ndelay",
]

# Lab 5: several devices (switches: platform_device_id), a kref on state that outlives remove().
_LAB5 = _LAB4 + [
    r"platform_get_device_id|dev_name|devm_kasprintf|kasprintf|kvasprintf|refcount_dec_and_.*|"
    r"_atomic_dec_and_lock.*|dev_set_name",
]

LAB_NEEDS: dict[int, re.Pattern[str]] = {3: re.compile("|".join(_LAB3)), 4: re.compile("|".join(_LAB4)),
                                        5: re.compile("|".join(_LAB5)), 6: re.compile("|".join(_LAB5))}


@dataclass
class ImportCheck:
    lab: int = 0
    symbols: list[str] = field(default_factory=list)  # every import, for the checks that follow (kalloc)
    refused: dict[str, str] = field(default_factory=dict)  # symbol -> why
    error: str = ""  # the check itself could not run

    @property
    def ok(self) -> bool:
        return not self.refused and not self.error

    def refusal(self, module: str) -> str:
        """The message for a refused module: every symbol and why."""
        lines = [f"{sym}() ({why})" for sym, why in sorted(self.refused.items())]
        return (f"The grader did not load {module}.ko: it imports kernel functions that are not on lab {self.lab}'s "
                f"list of what its driver needs:\n"
                + "\n".join(f"    | {ln}" for ln in lines)
                + "\n  Remove them (the chapter lists what the driver needs). If your instructor allowed them, "
                  "the instructor grades this lab by hand.")


def undefined_symbols(ko: Path) -> list[str]:
    """The symbols a .ko imports from the kernel (nm -u)."""
    res = subprocess.run(["nm", "-u", str(ko)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise OSError(res.stderr.strip() or f"nm failed on {ko.name}")
    return sorted({ln.split()[-1] for ln in res.stdout.splitlines() if ln.strip()})


def check_imports(ko: Path, lab: int, allowed: tuple[str, ...] = ()) -> ImportCheck:
    """Check a module's imports against lab `lab`'s list (LAB_NEEDS) and `allowed` (the lab's extra names):
    anything else is refused, with the reason of its family (REFUSED) or as not needed."""
    try:
        syms = undefined_symbols(ko)
    except (OSError, subprocess.SubprocessError) as e:
        return ImportCheck(lab=lab, error=f"cannot read the module's imports: {e}")
    needs = LAB_NEEDS.get(lab)
    if needs is None:
        return ImportCheck(lab=lab, error=f"lab {lab} has no list of the kernel functions its driver needs")
    c = ImportCheck(lab=lab, symbols=syms)
    for sym in syms:
        if sym in allowed:
            continue
        why = next((w for pat, w in REFUSED if re.fullmatch(pat, sym)), None)
        if why is not None:
            c.refused[sym] = why
        elif not needs.fullmatch(sym):
            c.refused[sym] = f"not on lab {lab}'s list of what its driver needs"
    return c
