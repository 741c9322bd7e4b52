// SPDX-License-Identifier: GPL-2.0
/*
 * button_driver.c - a push button as a character device that signals
 *
 * A platform driver for the board's "wb-button" device.  It takes the
 * button's GPIO line and its interrupt, and makes a misc device,
 * /dev/button.  Every interrupt (the button went down or came up) becomes
 * one struct button_event (button_event.h): the new state, a
 * CLOCK_MONOTONIC timestamp and a sequence number.
 *
 * Each open file of /dev/button has its own ring of BUTTON_RING_SIZE
 * records, so several programs can watch the button and each sees every
 * event.  When a reader falls behind, its oldest record is overwritten: a
 * reader always gets the newest BUTTON_RING_SIZE records, and a jump in
 * the sequence numbers tells it how many it missed.
 *
 * Signal-driven I/O: the files that asked for it (fcntl O_ASYNC) are on
 * one fasync list for the device; after recording an event the driver
 * calls kill_fasync() on it, and every registered owner gets SIGIO.
 *
 * Debounce (lab 4): a real contact bounces, so one press is a few edges in
 * a millisecond or two.  With the module parameter debounce_ms set, an
 * edge does not make an event: it restarts a timer, and only when the line
 * has been quiet for debounce_ms does the timer read the settled level and
 * make one event, if the level differs from the last one reported.
 * debounce_ms=0 (the default) makes every edge an event, as in lab 3.
 *
 *	read(2)		one or more whole records; blocks while the ring is
 *			empty, or fails with EAGAIN under O_NONBLOCK
 *	poll(2)		POLLIN while the ring has a record
 *	fcntl O_ASYNC	SIGIO (or the F_SETSIG signal) at every event
 *
 * Load it and the board in either order (insmod wb_board.ko; insmod
 * button_driver.ko [debounce_ms=20]): it uses no symbol of the board's
 * module, and the driver core calls probe once both the wb-button device and
 * this driver are there.  Unload it before the board, which is busy while we
 * hold its line.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/gpio/consumer.h>
#include <linux/hrtimer.h>
#include <linux/interrupt.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#include "button_event.h"

#define BUTTON_NAME	"button"

/* TODO 4: the debounce window, a module parameter: unsigned int debounce_ms,
   default 0 (off), readable in /sys/module/button_driver/parameters/
   (module_param(), MODULE_PARM_DESC()). */

/* The device: one per board, made at probe. */
struct button_dev {
	struct gpio_desc *gpio;
	int irq;
	struct miscdevice misc;

	spinlock_t lock;		/* @readers, @seq, and every ring */
	struct list_head readers;	/* open files: struct button_reader */
	u32 seq;			/* sequence number of the last event */
	wait_queue_head_t wait;		/* readers sleeping in read or poll */
	struct fasync_struct *async_queue;	/* files with O_ASYNC set */
	bool pressed;			/* the state last reported */
	/* TODO 4: the debounce timer (struct hrtimer). */
};

/* One open file: its ring of events not yet read. */
struct button_reader {
	struct button_dev *bdev;
	struct list_head node;		/* in bdev->readers */
	unsigned int head;		/* index of the oldest record */
	unsigned int count;		/* records in the ring */
	struct button_event ring[BUTTON_RING_SIZE];
};

/*
 * The rings.  Adding an event to a full ring overwrites the oldest one;
 * taking one takes the oldest.  Both run under bdev->lock.
 */
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

static struct button_dev *to_button_dev(struct file *file)
{
	/* misc_open() left our struct miscdevice in private_data. */
	struct miscdevice *misc = file->private_data;

	return container_of(misc, struct button_dev, misc);
}

/*
 * An event: the new state, now.  Into every reader's ring, then wake the
 * readers and signal the owners.  Hard-IRQ context (the interrupt handler,
 * or the debounce timer), so: a spinlock, no allocation, no copy_to_user.
 * kill_fasync() is safe here.
 */
static void button_report(struct button_dev *bdev, bool pressed)
{
	struct button_event ev;
	struct button_reader *r;

	ev.pressed = pressed;
	ev.time_ns = ktime_get_ns();

	spin_lock(&bdev->lock);
	ev.seq = ++bdev->seq;
	bdev->pressed = pressed;
	list_for_each_entry(r, &bdev->readers, node)
		button_push(r, &ev);
	spin_unlock(&bdev->lock);

	wake_up_interruptible(&bdev->wait);
	/* The band argument is a POLL_* code (POLL_IN), not a poll(2) bit. */
	kill_fasync(&bdev->async_queue, SIGIO, POLL_IN);
}

/*
 * The debounce timer fired: the line has been quiet for debounce_ms.  Its
 * level now is the settled state; an event only if it changed (a glitch
 * shorter than the window, press and release, leaves it as it was).
 */
/* TODO 4: read the settled level; report it if it is not bdev->pressed. */

/*
 * The interrupt handler: hard-IRQ context, interrupts off.  The new state
 * is the line's value now (gpiod_get_value(): 1 while pressed, the board's
 * line is active low).
 */
static irqreturn_t button_irq(int irq, void *data)
{
	struct button_dev *bdev = data;

	/*
	 * With debounce_ms set, an edge (re)starts the debounce timer instead
	 * of making an event: hrtimer_start() on a queued timer moves it, so
	 * the timer fires debounce_ms after the last edge of a bounce.
	 */
	/* TODO 4: with debounce_ms set, restart the timer and return. */
	button_report(bdev, gpiod_get_value(bdev->gpio) > 0);
	return IRQ_HANDLED;
}

/* TODO 4: a devm action that cancels the timer (hrtimer_cancel()). */

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

	file->private_data = r;
	return 0;
}

/*
 * The last close.  The VFS has already taken this file off the fasync
 * list (__fput() calls ->fasync(-1, file, 0) when O_ASYNC is set, before
 * ->release), so there is nothing to do for signals here.
 */
static int button_release(struct inode *inode, struct file *file)
{
	struct button_reader *r = file->private_data;
	struct button_dev *bdev = r->bdev;

	spin_lock_irq(&bdev->lock);
	list_del(&r->node);
	spin_unlock_irq(&bdev->lock);
	kfree(r);
	return 0;
}

static ssize_t button_read(struct file *file, char __user *buf, size_t len,
			   loff_t *ppos)
{
	/*
	 * Whole records only: EINVAL when len is smaller than one.  While
	 * the ring is empty: EAGAIN under O_NONBLOCK, else sleep in
	 * wait_event_interruptible().  Then copy as many records as fit.
	 */
	struct button_reader *r = file->private_data;
	struct button_event ev;
	size_t done = 0;
	int ret;

	if (len < sizeof(ev))
		return -EINVAL;

	while (!button_has_events(r)) {
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(r->bdev->wait,
					       button_has_events(r));
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
	return button_has_events(r) ? EPOLLIN | EPOLLRDNORM : 0;
}

/*
 * fcntl(F_SETFL) asked for O_ASYNC on or off, and the file's flag differs:
 * put the file on the list or take it off.  fasync_helper() also sets or
 * clears the file's FASYNC flag (F_SETFL never changes it itself), under
 * file->f_lock and the kernel's one fasync_lock.
 */
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

static int button_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct button_dev *bdev;
	int ret;

	bdev = devm_kzalloc(dev, sizeof(*bdev), GFP_KERNEL);
	if (!bdev)
		return -ENOMEM;
	spin_lock_init(&bdev->lock);
	INIT_LIST_HEAD(&bdev->readers);
	init_waitqueue_head(&bdev->wait);

	bdev->gpio = devm_gpiod_get(dev, "button", GPIOD_IN);
	if (IS_ERR(bdev->gpio))
		return dev_err_probe(dev, PTR_ERR(bdev->gpio),
				     "cannot get the button's GPIO line\n");

	bdev->pressed = gpiod_get_value(bdev->gpio) > 0;

	bdev->irq = gpiod_to_irq(bdev->gpio);
	if (bdev->irq < 0)
		return dev_err_probe(dev, bdev->irq, "the line has no IRQ\n");

	/*
	 * The timer's handler runs in hard-IRQ context like the interrupt
	 * handler (HRTIMER_MODE_REL_HARD), so the same locking holds.  It must
	 * be cancelled when the device goes, and only after the IRQ is freed
	 * (an edge could start it again): devm undoes in reverse order, so an
	 * action added now runs after the devm IRQ below is freed.
	 */
	/* TODO 4: set up the timer; cancel it with devm_add_action_or_reset(). */

	ret = devm_request_irq(dev, bdev->irq, button_irq,
			       IRQF_TRIGGER_RISING | IRQF_TRIGGER_FALLING,
			       KBUILD_MODNAME, bdev);
	if (ret)
		return dev_err_probe(dev, ret, "cannot request IRQ %d\n",
				     bdev->irq);

	bdev->misc.minor = MISC_DYNAMIC_MINOR;
	bdev->misc.name = BUTTON_NAME;
	bdev->misc.fops = &button_fops;
	bdev->misc.parent = dev;
	bdev->misc.mode = 0444;
	ret = misc_register(&bdev->misc);
	if (ret)
		return dev_err_probe(dev, ret, "cannot register /dev/%s\n",
				     BUTTON_NAME);

	platform_set_drvdata(pdev, bdev);
	dev_info(dev, "/dev/%s ready, IRQ %d\n", BUTTON_NAME, bdev->irq);
	return 0;
}

/*
 * rmmod: no file is open (each one pins the module through .owner).  The
 * devm IRQ is freed after this returns, then the debounce timer is
 * cancelled: the handler and the timer may run once more, and find the
 * list of readers empty.
 */
static void button_remove(struct platform_device *pdev)
{
	struct button_dev *bdev = platform_get_drvdata(pdev);

	misc_deregister(&bdev->misc);
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
	.probe	= button_probe,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	.remove	= button_remove,
#else
	.remove	= button_remove_int,
#endif
	.driver	= {
		.name			= "wb-button",
		/* unbinding through sysfs would pull the device from under
		 * open files: allow it only through rmmod */
		.suppress_bind_attrs	= true,
	},
};
module_platform_driver(button_driver);

MODULE_DESCRIPTION("Push button as a character device with SIGIO notification and debounce");
MODULE_LICENSE("GPL");
