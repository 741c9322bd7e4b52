// SPDX-License-Identifier: GPL-2.0
/*
 * wb_test.c - a test consumer for the simulated button board (wb_board.ko)
 *
 * A platform driver for "wb-button", written as the learner's driver will
 * be: gpiod_get(dev, "button", GPIOD_IN), gpiod_to_irq(), request_irq().
 * It counts what its hard-IRQ handler sees and lets a test choose the
 * trigger, through /sys/kernel/debug/wb-test:
 *
 *   ctl    write: request none|rising|falling|both|level-high|level-low
 *                 (none: request_irq() without trigger flags; the write
 *                 fails with request_irq()'s error), free, disable,
 *                 enable, reset
 *   stats  read:  irq, requested, trigger, count, pressed, released,
 *                 bad_value, not_hardirq, irqs_on, value, raw
 *
 * "pressed" counts handler runs that read the line as 1 (logical, so
 * active low: physically low), "released" those that read 0.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/gpio/consumer.h>
#include <linux/interrupt.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/version.h>

struct wbt {
	struct device *dev;
	struct gpio_desc *gpio;
	int irq;
	struct mutex lock;	/* request, free, disable, enable */
	bool requested;
	int disabled;		/* disable_irq() depth we added */
	const char *trigger;
	atomic64_t count, pressed, released, bad_value, not_hardirq, irqs_on;
	struct dentry *dir;
};

static const struct {
	const char *name;
	unsigned long flags;
} wbt_triggers[] = {
	{ "none",	0 },
	{ "rising",	IRQF_TRIGGER_RISING },
	{ "falling",	IRQF_TRIGGER_FALLING },
	{ "both",	IRQF_TRIGGER_RISING | IRQF_TRIGGER_FALLING },
	{ "level-high",	IRQF_TRIGGER_HIGH },
	{ "level-low",	IRQF_TRIGGER_LOW },
};

static irqreturn_t wbt_irq(int irq, void *data)
{
	struct wbt *t = data;
	int v = gpiod_get_value(t->gpio);

	atomic64_inc(&t->count);
	if (v == 1)
		atomic64_inc(&t->pressed);
	else if (v == 0)
		atomic64_inc(&t->released);
	else
		atomic64_inc(&t->bad_value);
	if (!in_hardirq())
		atomic64_inc(&t->not_hardirq);
	if (!irqs_disabled())
		atomic64_inc(&t->irqs_on);
	return IRQ_HANDLED;
}

/* Caller holds t->lock. */
static void wbt_free(struct wbt *t)
{
	if (!t->requested)
		return;
	while (t->disabled > 0) {
		enable_irq(t->irq);
		t->disabled--;
	}
	free_irq(t->irq, t);
	t->requested = false;
	t->trigger = "none";
}

static int wbt_request(struct wbt *t, const char *name)
{
	unsigned int i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(wbt_triggers); i++)
		if (!strcmp(name, wbt_triggers[i].name))
			break;
	if (i == ARRAY_SIZE(wbt_triggers))
		return -EINVAL;

	wbt_free(t);
	ret = request_irq(t->irq, wbt_irq, wbt_triggers[i].flags,
			  KBUILD_MODNAME, t);
	if (ret)
		return ret;
	t->requested = true;
	t->trigger = wbt_triggers[i].name;
	return 0;
}

static ssize_t wbt_ctl_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	struct wbt *t = file->private_data;
	char buf[48], cmd[16], arg[16];
	int n, ret = 0;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	n = sscanf(buf, "%15s %15s", cmd, arg);
	if (n < 1)
		return -EINVAL;

	mutex_lock(&t->lock);
	if (!strcmp(cmd, "request") && n == 2) {
		ret = wbt_request(t, arg);
	} else if (!strcmp(cmd, "free") && n == 1) {
		wbt_free(t);
	} else if (!strcmp(cmd, "disable") && n == 1) {
		if (t->requested) {
			disable_irq(t->irq);
			t->disabled++;
		} else {
			ret = -EINVAL;
		}
	} else if (!strcmp(cmd, "enable") && n == 1) {
		if (t->requested && t->disabled > 0) {
			enable_irq(t->irq);
			t->disabled--;
		} else {
			ret = -EINVAL;
		}
	} else if (!strcmp(cmd, "reset") && n == 1) {
		atomic64_set(&t->count, 0);
		atomic64_set(&t->pressed, 0);
		atomic64_set(&t->released, 0);
		atomic64_set(&t->bad_value, 0);
		atomic64_set(&t->not_hardirq, 0);
		atomic64_set(&t->irqs_on, 0);
	} else {
		ret = -EINVAL;
	}
	mutex_unlock(&t->lock);
	return ret ? ret : count;
}

static const struct file_operations wbt_ctl_fops = {
	.owner	= THIS_MODULE,
	.open	= simple_open,
	.write	= wbt_ctl_write,
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
	.llseek	= no_llseek,	/* 6.12: gone; no .llseek means no seeking */
#endif
};

static int wbt_stats_show(struct seq_file *s, void *unused)
{
	struct wbt *t = s->private;

	mutex_lock(&t->lock);
	seq_printf(s, "irq %d\n", t->irq);
	seq_printf(s, "requested %d\n", t->requested);
	seq_printf(s, "trigger %s\n", t->trigger);
	mutex_unlock(&t->lock);
	seq_printf(s, "count %lld\n", atomic64_read(&t->count));
	seq_printf(s, "pressed %lld\n", atomic64_read(&t->pressed));
	seq_printf(s, "released %lld\n", atomic64_read(&t->released));
	seq_printf(s, "bad_value %lld\n", atomic64_read(&t->bad_value));
	seq_printf(s, "not_hardirq %lld\n", atomic64_read(&t->not_hardirq));
	seq_printf(s, "irqs_on %lld\n", atomic64_read(&t->irqs_on));
	seq_printf(s, "value %d\n", gpiod_get_value(t->gpio));
	seq_printf(s, "raw %d\n", gpiod_get_raw_value(t->gpio));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(wbt_stats);

static int wbt_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct wbt *t;

	t = devm_kzalloc(dev, sizeof(*t), GFP_KERNEL);
	if (!t)
		return -ENOMEM;
	t->dev = dev;
	t->trigger = "none";
	mutex_init(&t->lock);

	t->gpio = devm_gpiod_get(dev, "button", GPIOD_IN);
	if (IS_ERR(t->gpio))
		return dev_err_probe(dev, PTR_ERR(t->gpio), "no button GPIO\n");
	t->irq = gpiod_to_irq(t->gpio);
	if (t->irq < 0)
		return dev_err_probe(dev, t->irq, "button GPIO has no IRQ\n");

	t->dir = debugfs_create_dir("wb-test", NULL);
	debugfs_create_file("ctl", 0200, t->dir, t, &wbt_ctl_fops);
	debugfs_create_file("stats", 0444, t->dir, t, &wbt_stats_fops);
	platform_set_drvdata(pdev, t);
	dev_info(dev, "button on IRQ %d\n", t->irq);
	return 0;
}

static void wbt_remove(struct platform_device *pdev)
{
	struct wbt *t = platform_get_drvdata(pdev);

	debugfs_remove_recursive(t->dir);
	mutex_lock(&t->lock);
	wbt_free(t);
	mutex_unlock(&t->lock);
	mutex_destroy(&t->lock);
}

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 11, 0)
/* Before 6.11 .remove returned an int, which the driver core ignored. */
static int wbt_remove_int(struct platform_device *pdev)
{
	wbt_remove(pdev);
	return 0;
}
#endif

static struct platform_driver wbt_driver = {
	.probe	= wbt_probe,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	.remove	= wbt_remove,
#else
	.remove	= wbt_remove_int,
#endif
	.driver	= {
		.name	= "wb-button",
	},
};
module_platform_driver(wbt_driver);

MODULE_DESCRIPTION("Test consumer for the simulated button board");
MODULE_LICENSE("GPL");
