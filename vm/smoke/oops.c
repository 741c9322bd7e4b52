// SPDX-License-Identifier: GPL-2.0
/*
 * oops.c - a module that oopses on load, for the VM driver's own tests
 *
 * insmod dies with the Oops (the kernel kills the insmod process); the VM
 * stays up, and vm/machine.py must find and return the Oops excerpt.
 */
#include <linux/init.h>
#include <linux/module.h>

static int __init oops_init(void)
{
	int *volatile p = NULL;

	return *p;
}

module_init(oops_init);
MODULE_DESCRIPTION("Deliberately oopses on load");
MODULE_LICENSE("GPL");
