"""What a student's kernel module may call, checked before it is loaded.

A module runs in ring 0: once loaded, nothing in the VM is out of its reach.
So before `insmod` the grader reads the kernel symbols the .ko imports (its
undefined symbols, `nm -u`) and sorts them:

- refused: functions no lab needs and that would let a module change what the
  grader sees rather than do the lab's work: run programs in user space
  (call_usermodehelper*), open, read or write files (filp_open, kernel_write,
  vfs_*), hook or patch the kernel (kprobes, ftrace, kallsyms, __symbol_get,
  text_poke, set_memory_*), change credentials, hide or rewrite the kernel's
  log (console_printk holds console_loglevel; console_*, kmsg_dump_*), power
  the machine off, or send signals to processes directly instead of through
  kill_fasync() (kill_pid, send_sig...). Such a module is not loaded; the
  lab's tests fail with the reason, and an instructor can look at it by hand;
- for review: anything else outside the functions a driver of these labs
  plausibly uses. The module is loaded and graded, and the report names the
  functions so that the instructor can look;
- fine: the rest.

What remains (the residual risk, README "Containment"): a module written to
attack the grader can still reach kernel memory by other means (raw pointers,
inline assembly, addresses read from /proc/kallsyms), so the VM is the outer
boundary: it is thrown away after each lab, it has no network and no disk,
and the grader reads the kernel's taint flags, which no exported function can
clear, to see warnings and oopses a module tried to hide.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# (pattern, why) - refused outright
REFUSED: list[tuple[str, str]] = [
    (r"call_usermodehelper.*|__request_module|request_module.*|kernel_execve", "runs programs in user space"),
    (r"filp_open|filp_close|file_open_root|file_open_name|kern_path.*|kernel_read.*|kernel_write|__kernel_write|"
     r"vfs_.*|do_truncate|kernel_file_open", "opens, reads or writes files"),
    (r"register_k(ret)?probes?|unregister_k(ret)?probes?|register_ftrace_.*|unregister_ftrace_.*|ftrace_set_.*|"
     r"kallsyms_.*|__symbol_get|symbol_put_addr|text_poke.*|set_memory_.*|set_direct_map_.*|"
     r"tracepoint_probe_(un)?register.*|register_trace_.*|static_key_.*enable.*|bpf_.*",
     "hooks into or patches the kernel"),
    (r"commit_creds|prepare_kernel_cred|prepare_creds|override_creds|revert_creds|abort_creds",
     "changes a process's credentials"),
    (r"console_.*|kmsg_dump.*|printk_ratelimit_state|log_buf.*|vprintk_emit|devkmsg_.*|do_syslog|"
     r"suppress_printk|oops_in_progress|panic_notifier_list", "changes or hides the kernel's log or state"),
    (r"kernel_power_off|kernel_restart|kernel_halt|orderly_.*|emergency_restart|machine_.*|ctrl_alt_del",
     "powers off or restarts the machine"),
    (r"kill_pid.*|kill_pgrp|send_sig.*|force_sig.*|group_send_sig_info|do_send_sig_info|__kill_pgrp_info|"
     r"kill_pid_usb_asyncio", "sends signals to processes itself (the labs' drivers signal through kill_fasync())"),
]

# Functions and families a driver of these labs may use without a second look.
FINE = re.compile("|".join([
    r"__fentry__|__stack_chk_fail|__x86_.*|__SCT__.*|__list_.*_valid(_or_report)?|__ubsan_.*|__warn_printk|__might_.*|"
    r"__cond_resched.*|_cond_resched|preempt_schedule.*|__preempt_count|__per_cpu_offset|pcpu_hot|"
    r"refcount_warn_saturate|__check_object_size|__fortify_panic|fortify_panic|__kasan_.*|kasan_.*",
    r"_printk|printk|__dynamic_(pr|dev)_debug|_dev_(emerg|alert|crit|err|warn|notice|info)|dev_(err|warn|info|"
    r"notice|dbg)_probe|dev_err_probe|dev_printk.*|_dev_printk|__dev_printk|netdev_.*printk.*",
    r"__kmalloc.*|kmalloc.*|kfree.*|kzalloc.*|kcalloc.*|krealloc.*|kmemdup.*|kstrdup.*|kvfree|kvmalloc.*|"
    r"kmem_cache_.*|vmalloc|vzalloc|vfree|devm_.*|__devm_.*|get_random_.*|memdup_user",
    r"platform_.*|__platform_.*|misc_register|misc_deregister|gpiod_.*|gpio_to_desc|desc_to_gpio|"
    r"request_threaded_irq|request_any_context_irq|free_irq|disable_irq.*|enable_irq|synchronize_irq|"
    r"irq_.*wake.*|irq_get_irq_data|irq_set_irq_type|__irq_.*",
    r"_raw_.*|__raw_.*|__rwlock_init|__spin_lock_init|__mutex_init|mutex_.*|__init_rwsem|down_.*|up_.*|"
    r"__init_swait_queue_head|__rcu_read_(un)?lock|synchronize_rcu.*|call_rcu|kfree_call_rcu|rcu_barrier|"
    r"__SCK__.*|_atomic_dec_and_lock.*|refcount_dec_and_.*",
    r"__init_waitqueue_head|__wake_up.*|init_wait_entry|prepare_to_wait.*|finish_wait|add_wait_queue.*|"
    r"remove_wait_queue|autoremove_wake_function|default_wake_function|woken_wake_function|wait_woken|"
    r"schedule.*|io_schedule.*|wake_up_process|complete.*|wait_for_completion.*|__init_completion|"
    r"msleep.*|usleep_range.*|__udelay|__const_udelay|__ndelay",
    r"fasync_helper|kill_fasync|_copy_to_user|_copy_from_user|copy_user_.*|__get_user_.*|__put_user_.*|"
    r"clear_user|__clear_user|strncpy_from_user|simple_read_from_buffer|simple_write_to_buffer|"
    r"no_llseek|noop_llseek|nonseekable_open|stream_open|generic_file_llseek|fixed_size_llseek|"
    r"__register_chrdev|__unregister_chrdev|alloc_chrdev_region|register_chrdev_region|"
    r"unregister_chrdev_region|cdev_.*|__class_create|class_create|class_destroy|device_create|"
    r"device_destroy|put_device|get_device|__fdget|fput|fget",
    r"ktime_.*|hrtimer_.*|jiffies.*|__msecs_to_jiffies|__usecs_to_jiffies|msecs_to_jiffies|"
    r"init_timer_key|mod_timer|add_timer|del_timer.*|timer_delete.*|try_to_del_timer_sync|"
    r"ns_to_timespec64|ns_to_kernel_old_timeval|ktime_get.*|system_wq|system_.*_wq|queue_work_on|"
    r"queue_delayed_work_on|delayed_work_timer_fn|__flush_workqueue|flush_work|flush_delayed_work|"
    r"cancel_work.*|cancel_delayed_work.*|alloc_workqueue|destroy_workqueue|tasklet_.*|__tasklet_.*",
    r"param_ops_.*|param_array_ops|param_get_.*|param_set_.*|__module_get|module_put|try_module_get|"
    r"__this_module|debugfs_.*|seq_.*|single_open|single_release|sysfs_.*|kobject_.*|__kfifo_.*|"
    r"mem(cpy|set|move|cmp|chr|scan)|str(len|nlen|cmp|ncmp|cpy|ncpy|scpy|lcpy|cat|chr|rchr|str|sep|"
    r"casecmp|ncasecmp)|__memcpy|__memset|sprintf|snprintf|scnprintf|vsnprintf|vscnprintf|sscanf|kstrto.*|"
    r"simple_strto.*|_find_.*bit.*|find_.*bit.*|__bitmap_.*|bitmap_.*|__sw_hweight.*|sort|bsearch|"
    r"_ctype|__fortify_.*|__sanitizer_.*|current_task|pid_vnr|__task_pid_nr_ns|task_tgid_.*|"
    r"get_task_pid|put_pid|pid_nr_ns|find_get_pid|__put_task_struct|fs_overflow.id|"
    r"__stack_chk_guard|__tracepoint_.*|__traceiter_.*|trace_event_.*|event_triggers_call|"
    r"perf_trace_.*|trace_raw_output_prep|trace_handle_return|trace_event_raw_init|"
    r"__SCT__tp_func_.*|__SCK__tp_func_.*|__trace_trigger_soft_disabled|__cpu_online_mask|"
    r"__cpu_possible_mask|nr_cpu_ids|cpu_number|__num_online_cpus|system_state|init_task|"
    r"__put_devmap_managed_page|mem_section|vmemmap_base|page_offset_base|phys_base",
]))


@dataclass
class ImportCheck:
    refused: dict[str, str] = field(default_factory=dict)  # symbol -> why
    review: list[str] = field(default_factory=list)
    error: str = ""  # the check itself could not run

    @property
    def ok(self) -> bool:
        return not self.refused and not self.error

    def refusal(self, module: str) -> str:
        """The message for a refused module: every symbol and why."""
        lines = [f"{sym} ({why})" for sym, why in sorted(self.refused.items())]
        return (f"The grader did not load {module}.ko: it imports kernel functions that no lab needs and that "
                f"would let a module change what the grader sees:\n"
                + "\n".join(f"    | {ln}" for ln in lines)
                + "\n  Remove them (the chapter lists what the driver needs). If your instructor allowed them, "
                  "the instructor grades this lab by hand.")


def undefined_symbols(ko: Path) -> list[str]:
    """The symbols a .ko imports from the kernel (nm -u)."""
    res = subprocess.run(["nm", "-u", str(ko)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise OSError(res.stderr.strip() or f"nm failed on {ko.name}")
    return sorted({ln.split()[-1] for ln in res.stdout.splitlines() if ln.strip()})


def check_imports(ko: Path, allowed: tuple[str, ...] = ()) -> ImportCheck:
    """Sort a module's imports into refused, for review and fine.  `allowed`: extra names a lab needs."""
    try:
        syms = undefined_symbols(ko)
    except (OSError, subprocess.SubprocessError) as e:
        return ImportCheck(error=f"cannot read the module's imports: {e}")
    c = ImportCheck()
    for sym in syms:
        why = next((w for pat, w in REFUSED if re.fullmatch(pat, sym)), None)
        if why is not None and sym not in allowed:
            c.refused[sym] = why
        elif not FINE.fullmatch(sym) and sym not in allowed:
            c.review.append(sym)
    return c
