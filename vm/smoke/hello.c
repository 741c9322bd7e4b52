// SPDX-License-Identifier: GPL-2.0
/*
 * hello.c - the smallest module, for the VM's smoke test
 *
 * Proves the whole path: built with kbuild against the cached headers,
 * loaded with insmod in the VM, its messages seen in the kernel log,
 * unloaded with rmmod.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init hello_init(void)
{
	pr_warn("workbook-hello: loaded\n");
	return 0;
}

static void __exit hello_exit(void)
{
	pr_warn("workbook-hello: unloaded\n");
}

module_init(hello_init);
module_exit(hello_exit);
MODULE_DESCRIPTION("Smoke test module of the workbook VM");
MODULE_LICENSE("GPL");
