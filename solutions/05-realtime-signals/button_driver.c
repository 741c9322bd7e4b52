// SPDX-License-Identifier: GPL-2.0
/*
 * button_driver.c - the board's button and switches as character devices
 * that signal, and that can be unplugged while they are open
 *
 * A platform driver for the board's "wb-button" device and its three
 * "wb-switch" devices (wb-switch.1 .. wb-switch.3): one driver, four
 * devices.  For each it takes the GPIO line and its interrupt and makes a
 * misc device: /dev/button, /dev/switch1, /dev/switch2, /dev/switch3.
 * Every interrupt (the line went down or came up) becomes one struct
 * button_event (button_event.h): the new state, a CLOCK_MONOTONIC
 * timestamp and a sequence number, counted per device.
 *
 * Each open file has its own ring of BUTTON_RING_SIZE records; when a
 * reader falls behind, its oldest record is overwritten, and the jump in
 * seq tells it how many it missed.  Debounce (lab 4) is the module
 * parameter debounce_ms, for every device.
 *
 * Signal-driven I/O: after recording an event the driver calls
 * kill_fasync() with the band POLL_IN, so an owner that chose a realtime
 * signal with F_SETSIG gets one queued signal per event, with si_code
 * POLL_IN, si_band POLLIN | POLLRDNORM and si_fd naming the file.  An
 * overwrite in the ring sends nothing more: the record that overwrote sends
 * its POLL_IN, and the seq gap reports the loss.
 *
 * Hot-unplug (lab 5): `button unplug [LINE]` unregisters the device, and
 * remove() runs at once, whether or not files are open.  As evdev does,
 * the device's state is then kept alive by a reference count (a kref: one
 * reference for the device, one per open file) and marked gone: readers
 * are woken, the registered owners get POLL_HUP, read(2) fails with
 * ENODEV and poll(2) reports EPOLLHUP | EPOLLERR.  The state is freed when
 * the last reference goes: when the last file is closed, or at once if
 * none is open.  `button plug [LINE]` brings the device back, and probe()
 * makes a new one.
 *
 *	read(2)		one or more whole records; blocks while the ring is
 *			empty, or fails with EAGAIN under O_NONBLOCK; ENODEV
 *			once the device is gone
 *	poll(2)		POLLIN while the ring has a record; POLLHUP | POLLERR
 *			once the device is gone
 *	fcntl O_ASYNC	SIGIO (or the F_SETSIG signal) at every event, with
 *			POLL_IN; POLL_HUP when the device goes
 *
 * Load it and the board in either order; unload it before the board.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/gpio/consumer.h>
#include <linux/hrtimer.h>
#include <linux/interrupt.h>
#include <linux/kref.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mod_devicetable.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#include "button_event.h"

static unsigned int debounce_ms;
module_param(debounce_ms, uint, 0444);
MODULE_PARM_DESC(debounce_ms,
		 "ms the line must stay quiet before its level counts as an event (0: every edge is an event)");

/* One device: the button or a switch, made at probe. */
struct button_dev {
	struct gpio_desc *gpio;
	int irq;
	struct miscdevice misc;
	char name[16];			/* "button", "switch1": /dev/NAME */

	spinlock_t lock;		/* @readers, @seq, @gone, every ring */
	struct list_head readers;	/* open files: struct button_reader */
	u32 seq;			/* sequence number of the last event */
	wait_queue_head_t wait;		/* readers sleeping in read or poll */
	struct fasync_struct *async_queue;	/* files with O_ASYNC set */
	bool pressed;			/* the state last reported */
	struct hrtimer debounce;
	/* TODO 6: the lifetime of a device that can go away while it is open:
	   a reference count (struct kref: the device's own reference, and one
	   per open file) and a flag that says it is gone. */
	struct kref ref;
	bool gone;			/* remove() has run: no more events */
	/* END TODO */
};

/* One open file: its ring of events not yet read. */
struct button_reader {
	struct button_dev *bdev;
	struct list_head node;		/* in bdev->readers */
	unsigned int head;		/* index of the oldest record */
	unsigned int count;		/* records in the ring */
	struct button_event ring[BUTTON_RING_SIZE];
};

/* TODO 6: free the state when the last reference goes (kref_put()'s
   release function), and a devm action that drops the device's own
   reference. */
static void button_free(struct kref *ref)
{
	kfree(container_of(ref, struct button_dev, ref));
}

static void button_put_device(void *data)
{
	struct button_dev *bdev = data;

	kref_put(&bdev->ref, button_free);
}
/* END TODO */

/* Caller holds bdev->lock. */
static void button_push(struct button_reader *r, const struct button_event *ev)
{
	unsigned int tail = (r->head + r->count) % BUTTON_RING_SIZE;

	r->ring[tail] = *ev;
	if (r->count < BUTTON_RING_SIZE)
		r->count++;
	else
		r->head = (r->head + 1) % BUTTON_RING_SIZE;
}

static bool button_pop(struct button_reader *r, struct button_event *ev)
{
	struct button_dev *bdev = r->bdev;
	bool got = false;

	spin_lock_irq(&bdev->lock);
	if (r->count) {
		*ev = r->ring[r->head];
		r->head = (r->head + 1) % BUTTON_RING_SIZE;
		r->count--;
		got = true;
	}
	spin_unlock_irq(&bdev->lock);
	return got;
}

static bool button_has_events(struct button_reader *r)
{
	return READ_ONCE(r->count) != 0;
}

static bool button_gone(struct button_dev *bdev)
{
	/* TODO 6: true once remove() has marked the device gone. */
	return READ_ONCE(bdev->gone);
	//> return false;
	/* END TODO */
}

static struct button_dev *to_button_dev(struct file *file)
{
	/* misc_open() left our struct miscdevice in private_data. */
	struct miscdevice *misc = file->private_data;

	return container_of(misc, struct button_dev, misc);
}

/*
 * An event: the new state, now.  Into every reader's ring, then wake the
 * readers and signal the owners: one kill_fasync() per event, band
 * POLL_IN (data to read), whether or not a ring overwrote its oldest
 * record.  Hard-IRQ context (the interrupt handler, or the debounce timer).
 */
static void button_report(struct button_dev *bdev, bool pressed)
{
	struct button_event ev;
	struct button_reader *r;

	ev.pressed = pressed;
	ev.time_ns = ktime_get_ns();

	spin_lock(&bdev->lock);
	if (button_gone(bdev)) {	/* an edge while remove() runs */
		spin_unlock(&bdev->lock);
		return;
	}
	ev.seq = ++bdev->seq;
	bdev->pressed = pressed;
	list_for_each_entry(r, &bdev->readers, node)
		button_push(r, &ev);
	spin_unlock(&bdev->lock);

	wake_up_interruptible(&bdev->wait);
	kill_fasync(&bdev->async_queue, SIGIO, POLL_IN);
}

static enum hrtimer_restart button_settled(struct hrtimer *timer)
{
	struct button_dev *bdev = container_of(timer, struct button_dev,
					       debounce);
	bool pressed = gpiod_get_value(bdev->gpio) > 0;

	if (pressed != bdev->pressed)
		button_report(bdev, pressed);
	return HRTIMER_NORESTART;
}

static irqreturn_t button_irq(int irq, void *data)
{
	struct button_dev *bdev = data;

	if (debounce_ms) {
		hrtimer_start(&bdev->debounce, ms_to_ktime(debounce_ms),
			      HRTIMER_MODE_REL_HARD);
		return IRQ_HANDLED;
	}
	button_report(bdev, gpiod_get_value(bdev->gpio) > 0);
	return IRQ_HANDLED;
}

static void button_cancel_debounce(void *data)
{
	struct button_dev *bdev = data;

	hrtimer_cancel(&bdev->debounce);
}

/*
 * misc_open() calls this under the misc devices' lock, which
 * misc_deregister() takes too: once remove() has deregistered the device,
 * no open can reach it any more, and one that got here first holds its own
 * reference before remove() goes on.
 */
static int button_open(struct inode *inode, struct file *file)
{
	struct button_dev *bdev = to_button_dev(file);
	struct button_reader *r;

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	r->bdev = bdev;

	spin_lock_irq(&bdev->lock);
	list_add_tail(&r->node, &bdev->readers);
	spin_unlock_irq(&bdev->lock);
	/* TODO 6: the file holds a reference on the device's state. */
	kref_get(&bdev->ref);
	/* END TODO */

	file->private_data = r;
	return 0;
}

/*
 * The last close.  The VFS has already taken this file off the fasync
 * list (->fasync(-1, file, 0) before ->release).  The device may be gone:
 * its state is still there, because this file holds a reference on it.
 */
static int button_release(struct inode *inode, struct file *file)
{
	struct button_reader *r = file->private_data;
	struct button_dev *bdev = r->bdev;

	spin_lock_irq(&bdev->lock);
	list_del(&r->node);
	spin_unlock_irq(&bdev->lock);
	kfree(r);
	/* TODO 6: drop the file's reference (the last one frees the state). */
	kref_put(&bdev->ref, button_free);
	/* END TODO */
	return 0;
}

static ssize_t button_read(struct file *file, char __user *buf, size_t len,
			   loff_t *ppos)
{
	/*
	 * Whole records only: EINVAL when len is smaller than one.  ENODEV
	 * once the device is gone, as evdev does, even with records left.
	 * While the ring is empty: EAGAIN under O_NONBLOCK, else sleep until
	 * an event comes or the device goes.  Then copy as many as fit.
	 */
	struct button_reader *r = file->private_data;
	struct button_dev *bdev = r->bdev;
	struct button_event ev;
	size_t done = 0;
	int ret;

	if (len < sizeof(ev))
		return -EINVAL;

	for (;;) {
		/* TODO 6: a device that is gone fails with ENODEV (before and
		   after sleeping); a sleeper wakes when it goes. */
		if (button_gone(bdev))
			return -ENODEV;
		/* END TODO */
		if (button_has_events(r))
			break;
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(bdev->wait,
					       button_has_events(r) ||
					       button_gone(bdev));
		if (ret)
			return ret;
	}

	while (len - done >= sizeof(ev) && button_pop(r, &ev)) {
		if (copy_to_user(buf + done, &ev, sizeof(ev)))
			return done ? done : -EFAULT;
		done += sizeof(ev);
	}
	return done;
}

static __poll_t button_poll(struct file *file, poll_table *wait)
{
	struct button_reader *r = file->private_data;

	poll_wait(file, &r->bdev->wait, wait);
	/* TODO 6: a device that is gone reports EPOLLHUP | EPOLLERR. */
	if (button_gone(r->bdev))
		return EPOLLHUP | EPOLLERR;
	/* END TODO */
	return button_has_events(r) ? EPOLLIN | EPOLLRDNORM : 0;
}

static int button_fasync(int fd, struct file *file, int on)
{
	struct button_reader *r = file->private_data;

	return fasync_helper(fd, file, on, &r->bdev->async_queue);
}

static const struct file_operations button_fops = {
	.owner		= THIS_MODULE,	/* no rmmod while a file is open */
	.open		= button_open,
	.release	= button_release,
	.read		= button_read,
	.poll		= button_poll,
	.fasync		= button_fasync,
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
	.llseek		= no_llseek,	/* 6.12: gone; no .llseek means no seeking */
#endif
};

/* Which kind of device probe() is given: a platform_device_id's driver_data. */
enum { BUTTON_KIND, SWITCH_KIND };

/* TODO 5: which devices this driver binds: the button and the switches.
   driver_data says which one it is (BUTTON_KIND, SWITCH_KIND). */
static const struct platform_device_id button_ids[] = {
	{ .name = "wb-button", .driver_data = BUTTON_KIND },
	{ .name = "wb-switch", .driver_data = SWITCH_KIND },
	{ }
};
MODULE_DEVICE_TABLE(platform, button_ids);
/* END TODO */

static int button_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	const char *con_id = "button";	/* the GPIO's name in the board file */
	struct button_dev *bdev;
	int ret;

	/*
	 * The state may outlive this device: a file still open after
	 * remove() holds a reference on it.  So it is not devm memory (freed
	 * right after remove()), but counted: the device's own reference is
	 * dropped by a devm action added first, so that it runs last, after
	 * the IRQ is freed and the debounce timer cancelled.
	 */
	/* TODO 6: kzalloc() the state, kref_init() its count, and add the
	   devm action that drops the device's reference (before any other
	   devm resource). */
	bdev = kzalloc(sizeof(*bdev), GFP_KERNEL);
	if (!bdev)
		return -ENOMEM;
	kref_init(&bdev->ref);
	ret = devm_add_action_or_reset(dev, button_put_device, bdev);
	if (ret)
		return ret;
	//> bdev = devm_kzalloc(dev, sizeof(*bdev), GFP_KERNEL);
	//> if (!bdev)
	//> 	return -ENOMEM;
	/* END TODO */
	spin_lock_init(&bdev->lock);
	INIT_LIST_HEAD(&bdev->readers);
	init_waitqueue_head(&bdev->wait);

	/* TODO 5: a switch's GPIO is named "switch" and its node switchN
	   (N: the platform device's id, pdev->id); the button's "button". */
	if (platform_get_device_id(pdev)->driver_data == SWITCH_KIND) {
		con_id = "switch";
		snprintf(bdev->name, sizeof(bdev->name), "switch%d", pdev->id);
	} else {
		strscpy(bdev->name, "button", sizeof(bdev->name));
	}
	//> strscpy(bdev->name, "button", sizeof(bdev->name));
	/* END TODO */

	bdev->gpio = devm_gpiod_get(dev, con_id, GPIOD_IN);
	if (IS_ERR(bdev->gpio))
		return dev_err_probe(dev, PTR_ERR(bdev->gpio),
				     "cannot get the %s's GPIO line\n", con_id);

	bdev->pressed = gpiod_get_value(bdev->gpio) > 0;

	bdev->irq = gpiod_to_irq(bdev->gpio);
	if (bdev->irq < 0)
		return dev_err_probe(dev, bdev->irq, "the line has no IRQ\n");

	hrtimer_init(&bdev->debounce, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
	bdev->debounce.function = button_settled;
	ret = devm_add_action_or_reset(dev, button_cancel_debounce, bdev);
	if (ret)
		return ret;

	ret = devm_request_irq(dev, bdev->irq, button_irq,
			       IRQF_TRIGGER_RISING | IRQF_TRIGGER_FALLING,
			       KBUILD_MODNAME, bdev);
	if (ret)
		return dev_err_probe(dev, ret, "cannot request IRQ %d\n",
				     bdev->irq);

	bdev->misc.minor = MISC_DYNAMIC_MINOR;
	bdev->misc.name = bdev->name;
	bdev->misc.fops = &button_fops;
	bdev->misc.parent = dev;
	bdev->misc.mode = 0444;
	ret = misc_register(&bdev->misc);
	if (ret)
		return dev_err_probe(dev, ret, "cannot register /dev/%s\n",
				     bdev->name);

	platform_set_drvdata(pdev, bdev);
	dev_info(dev, "/dev/%s ready, IRQ %d\n", bdev->name, bdev->irq);
	return 0;
}

/*
 * The device goes: rmmod (no file is open: each pins the module), or an
 * unplug (files may be open).  After misc_deregister() no new open can
 * reach the device.  The files still open learn that it is gone: readers
 * and pollers are woken, the owners get POLL_HUP.  The devm IRQ is freed
 * after this returns, then the timer is cancelled, then the device's
 * reference is dropped: the state goes with the last file.
 */
static void button_remove(struct platform_device *pdev)
{
	struct button_dev *bdev = platform_get_drvdata(pdev);

	misc_deregister(&bdev->misc);
	/* TODO 6: mark the device gone (under the lock), wake the sleepers in
	   read and poll, and send the registered owners POLL_HUP. */
	spin_lock_irq(&bdev->lock);
	bdev->gone = true;
	spin_unlock_irq(&bdev->lock);
	wake_up_interruptible(&bdev->wait);
	kill_fasync(&bdev->async_queue, SIGIO, POLL_HUP);
	/* END TODO */
	dev_info(&pdev->dev, "/dev/%s removed\n", bdev->name);
}

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 11, 0)
/* Before 6.11 .remove returned an int, which the driver core ignored. */
static int button_remove_int(struct platform_device *pdev)
{
	button_remove(pdev);
	return 0;
}
#endif

static struct platform_driver button_driver = {
	.probe		= button_probe,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	.remove		= button_remove,
#else
	.remove		= button_remove_int,
#endif
	/* TODO 5: bind every device of the table. */
	.id_table	= button_ids,
	/* END TODO */
	.driver		= {
		.name			= "wb-button",
		/* unbinding through sysfs would pull the device from under
		 * open files: allow it only through rmmod or an unplug */
		.suppress_bind_attrs	= true,
	},
};
module_platform_driver(button_driver);

MODULE_DESCRIPTION("Button and switches as character devices with SIGIO, debounce and hot-unplug");
MODULE_LICENSE("GPL");
