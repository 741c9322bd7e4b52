// SPDX-License-Identifier: GPL-2.0
/*
 * wb_board.c - a simulated GPIO button board for the signal-driven I/O workbook
 *
 * The board has a memory-mapped style GPIO controller, "wb-gpio", with
 * WB_NLINES input lines and an edge-detecting interrupt controller, and a
 * push button wired to line 0 with a pull-up: released reads high, pressed
 * reads low.  A board file binds that line to the platform device
 * "wb-button" under the connection id "button", active low, so a driver
 * written for a real board runs unchanged:
 *
 *	desc = gpiod_get(&pdev->dev, "button", GPIOD_IN);
 *	irq = gpiod_to_irq(desc);
 *	request_irq(irq, handler, IRQF_TRIGGER_FALLING, "mydrv", dev);
 *
 * Nothing presses the button but a finger in debugfs: every line has a
 * directory /sys/kernel/debug/wb-board/lineN with a "ctl" file that takes
 * commands (press, release, click, burst, bounce, wait, stop, reset) and a
 * "stats" file.  README.md in this folder describes them.
 *
 * Edges are made by one hrtimer per line.  Its callback runs in hard-IRQ
 * context and plays the part of the controller's parent interrupt: it
 * changes the pin level, runs the edge detector and, when the edge is to
 * interrupt, calls generic_handle_domain_irq() like any chained GPIO
 * controller driver.  The consumer's handler therefore runs in hard-IRQ
 * context, is counted in /proc/interrupts, and sees the new level through
 * gpiod_get_value().  An edge detected while the line is masked sets a
 * one-bit pending latch, as on real hardware (more edges merge into it);
 * unmasking a line with the latch set, and the core's retrigger, send it
 * from a hard-IRQ irq_work.
 *
 * Only edge triggers exist; level triggers are refused with -EINVAL.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/gpio/driver.h>
#include <linux/gpio/machine.h>
#include <linux/hrtimer.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irq_work.h>
#include <linux/irqdesc.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/platform_device.h>
#include <linux/seq_file.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#define WB_NLINES		4
#define WB_CHIP_LABEL		"wb-gpio"
#define WB_BUTTON_DEV		"wb-button"
#define WB_BUTTON_CON_ID	"button"
#define WB_SWITCH_DEV		"wb-switch"	/* wb-switch.1 .. wb-switch.3 */
#define WB_SWITCH_CON_ID	"switch"
#define WB_DEBUGFS_DIR		"wb-board"

#define WB_DEFAULT_HOLD_US	1000
#define WB_DEFAULT_GAP_US	100
#define WB_MAX_CLICKS		10000000U
#define WB_MAX_TIME_US		10000000U	/* 10 s */
#define WB_MAX_BOUNCE		1000U
/*
 * The next edge is never scheduled sooner than this after the previous
 * callback ended, nor sooner than that callback took: the board then uses
 * at most about half a CPU however fast a burst is asked for, and the
 * hrtimer interrupt never finds its next timer already expired.
 */
#define WB_MIN_SLACK_NS		(5 * NSEC_PER_USEC)

static const char *const wb_line_names[WB_NLINES] = {
	"WB_BUTTON", "WB_SW1", "WB_SW2", "WB_SW3",
};

/*
 * With no job running and nothing pending, on one CPU:
 *	edges = ignored + delivered + coalesced + dropped
 *	irqs = delivered + deferred
 */
struct wb_stats {
	u64 edges;		/* level changes of the pin */
	u64 rising;
	u64 falling;
	u64 ignored;		/* no IRQ requested, or trigger not matching */
	u64 coalesced;		/* merged into an interrupt already pending */
	u64 dropped;		/* pending when the IRQ was freed: forgotten */
	u64 irqs;		/* interrupts sent into the IRQ layer */
	u64 replays;		/* of those, sent late from the pending latch */
	u64 delivered;		/* of those, acked: the handler ran */
	u64 deferred;		/* of those, refused (line disabled): the
				 * core masked the line and resends it */
	u64 late;		/* edges postponed: asked rate too fast
				 * (burst N 0, as fast as possible, is not) */
	u64 jobs;
	u64 last_job_edges;
	u64 last_job_ns;	/* from the job's start to its last edge */
};

/* A waveform being played on a line: press/release actions, with bounce. */
struct wb_job {
	u32 actions_left;	/* presses and releases still to make */
	bool press_next;	/* the next action is a press */
	u32 bounce;		/* bounces on each press and release */
	u32 chatter_left;	/* bounce edges of the current action to make */
	u64 period_ns;		/* from one action to the next */
	u64 gap_ns;		/* between bounce edges */
	ktime_t next_action;	/* when the next action is due */
	ktime_t start;
	ktime_t last_edge;
	u64 edges;
};

struct wb_board;

struct wb_line {
	struct wb_board *board;
	unsigned int offset;

	/* The pin and its interrupt logic, the "registers", under @lock. */
	raw_spinlock_t lock;
	bool high;		/* physical level, high when released */
	unsigned int trigger;	/* IRQ_TYPE_EDGE_* bits detected */
	bool armed;		/* IRQ in use: edges are detected */
	bool masked;
	bool pending;		/* edge detected while masked, not yet sent */

	/* The waveform player.  @busy, @job and the ids are under @lock. */
	struct mutex ctl_lock;	/* serialises starting and stopping jobs */
	struct hrtimer timer;
	bool busy;
	u64 job_id;		/* id of the newest job */
	u64 done_id;		/* id of the newest finished or stopped job */
	struct wb_job job;
	u32 bounce;		/* settings for jobs started later */
	u32 bounce_gap_us;
	wait_queue_head_t wq;	/* woken when a job ends */

	struct wb_stats stats;	/* under @lock */
};

struct wb_board {
	struct gpio_chip gc;
	struct wb_line lines[WB_NLINES];
	struct mutex plug_lock;	/* the consumer devices: plugging in and out */
	struct irq_work replay;	/* sends latched edges in hard-IRQ context */
	struct dentry *dir;
	bool dying;
};

static const char *wb_trigger_name(unsigned int trigger)
{
	switch (trigger & IRQ_TYPE_EDGE_BOTH) {
	case IRQ_TYPE_EDGE_RISING:
		return "rising";
	case IRQ_TYPE_EDGE_FALLING:
		return "falling";
	case IRQ_TYPE_EDGE_BOTH:
		return "both";
	default:
		return "none";
	}
}

/* ---------------------------------------------------------------------- */
/* The pin and the edge detector                                          */

/*
 * Drive the pin to @high; caller holds line->lock and the level changes.
 * Returns true when the edge is to be sent now as an interrupt; the caller
 * does that after dropping the lock.
 */
static bool wb_line_edge(struct wb_line *line, bool high)
{
	unsigned int type = high ? IRQ_TYPE_EDGE_RISING : IRQ_TYPE_EDGE_FALLING;

	WRITE_ONCE(line->high, high);
	line->stats.edges++;
	if (high)
		line->stats.rising++;
	else
		line->stats.falling++;

	if (!line->armed || !(line->trigger & type)) {
		line->stats.ignored++;
		return false;
	}
	if (line->masked) {
		if (line->pending)
			line->stats.coalesced++;
		line->pending = true;
		return false;
	}
	line->stats.irqs++;
	return true;
}

static void wb_line_send(struct wb_line *line)
{
	generic_handle_domain_irq(line->board->gc.irq.domain, line->offset);
}

/* irq_work, hard-IRQ context: send the edges latched while masked. */
static void wb_replay(struct irq_work *work)
{
	struct wb_board *board = container_of(work, struct wb_board, replay);
	unsigned long flags;
	unsigned int i;

	for (i = 0; i < WB_NLINES; i++) {
		struct wb_line *line = &board->lines[i];
		bool send = false;

		raw_spin_lock_irqsave(&line->lock, flags);
		if (line->pending && line->armed && !line->masked &&
		    !READ_ONCE(board->dying)) {
			line->pending = false;
			line->stats.irqs++;
			line->stats.replays++;
			send = true;
		}
		raw_spin_unlock_irqrestore(&line->lock, flags);

		if (send)
			wb_line_send(line);
	}
}

/* ---------------------------------------------------------------------- */
/* The interrupt controller                                               */

static struct wb_line *wb_irq_line(struct irq_data *d)
{
	struct gpio_chip *gc = irq_data_get_irq_chip_data(d);
	struct wb_board *board = gpiochip_get_data(gc);

	return &board->lines[irqd_to_hwirq(d)];
}

/*
 * handle_edge_irq() acks an interrupt just before it runs the handler (and
 * counts it in /proc/interrupts), and calls mask_ack instead when it
 * refuses one because the line is disabled: that interrupt is resent by
 * irq_retrigger when the line is enabled.  The pending latch itself is
 * cleared when its interrupt is sent.
 */
static void wb_irq_ack(struct irq_data *d)
{
	struct wb_line *line = wb_irq_line(d);
	unsigned long flags;

	raw_spin_lock_irqsave(&line->lock, flags);
	line->stats.delivered++;
	raw_spin_unlock_irqrestore(&line->lock, flags);
}

static void wb_irq_mask(struct irq_data *d)
{
	struct wb_line *line = wb_irq_line(d);
	unsigned long flags;

	raw_spin_lock_irqsave(&line->lock, flags);
	line->masked = true;
	raw_spin_unlock_irqrestore(&line->lock, flags);
	gpiochip_disable_irq(&line->board->gc, line->offset);
}

static void wb_irq_mask_ack(struct irq_data *d)
{
	struct wb_line *line = wb_irq_line(d);
	unsigned long flags;

	raw_spin_lock_irqsave(&line->lock, flags);
	line->stats.deferred++;
	raw_spin_unlock_irqrestore(&line->lock, flags);
	wb_irq_mask(d);
}

static void wb_irq_unmask(struct irq_data *d)
{
	struct wb_line *line = wb_irq_line(d);
	unsigned long flags;
	bool replay;

	gpiochip_enable_irq(&line->board->gc, line->offset);
	raw_spin_lock_irqsave(&line->lock, flags);
	line->masked = false;
	line->armed = true;
	replay = line->pending;
	raw_spin_unlock_irqrestore(&line->lock, flags);
	if (replay)
		irq_work_queue(&line->board->replay);
}

/* free_irq(): stop detecting edges and forget a latched one. */
static void wb_irq_shutdown(struct irq_data *d)
{
	struct wb_line *line = wb_irq_line(d);
	unsigned long flags;

	raw_spin_lock_irqsave(&line->lock, flags);
	line->masked = true;
	line->armed = false;
	if (line->pending)
		line->stats.dropped++;
	line->pending = false;
	raw_spin_unlock_irqrestore(&line->lock, flags);
	gpiochip_disable_irq(&line->board->gc, line->offset);
}

static int wb_irq_set_type(struct irq_data *d, unsigned int type)
{
	struct wb_line *line = wb_irq_line(d);
	unsigned long flags;

	if (type & IRQ_TYPE_LEVEL_MASK)
		return -EINVAL;

	raw_spin_lock_irqsave(&line->lock, flags);
	line->trigger = type & IRQ_TYPE_EDGE_BOTH;
	raw_spin_unlock_irqrestore(&line->lock, flags);
	return 0;
}

/* The core asks for a lost edge again (enable_irq() after a lazy disable). */
static int wb_irq_retrigger(struct irq_data *d)
{
	struct wb_line *line = wb_irq_line(d);
	unsigned long flags;
	bool ok;

	raw_spin_lock_irqsave(&line->lock, flags);
	ok = line->armed;
	if (ok) {
		if (line->pending)
			line->stats.coalesced++;
		line->pending = true;
	}
	raw_spin_unlock_irqrestore(&line->lock, flags);
	if (ok)
		irq_work_queue(&line->board->replay);
	return ok;
}

static const struct irq_chip wb_irq_chip = {
	.name			= WB_CHIP_LABEL,
	.irq_ack		= wb_irq_ack,
	.irq_mask		= wb_irq_mask,
	.irq_mask_ack		= wb_irq_mask_ack,
	.irq_unmask		= wb_irq_unmask,
	.irq_shutdown		= wb_irq_shutdown,
	.irq_set_type		= wb_irq_set_type,
	.irq_retrigger		= wb_irq_retrigger,
	.flags			= IRQCHIP_IMMUTABLE,
	GPIOCHIP_IRQ_RESOURCE_HELPERS,
};

/* ---------------------------------------------------------------------- */
/* The GPIO controller: input lines only                                  */

static int wb_gpio_get(struct gpio_chip *gc, unsigned int offset)
{
	struct wb_board *board = gpiochip_get_data(gc);

	return READ_ONCE(board->lines[offset].high);
}

static int wb_gpio_get_direction(struct gpio_chip *gc, unsigned int offset)
{
	return GPIO_LINE_DIRECTION_IN;
}

static int wb_gpio_direction_input(struct gpio_chip *gc, unsigned int offset)
{
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The waveform player                                                    */

/* Caller holds line->lock. */
static void wb_line_end_job(struct wb_line *line)
{
	line->busy = false;
	line->done_id = line->job_id;
	line->stats.last_job_edges = line->job.edges;
	line->stats.last_job_ns = line->job.edges ?
		ktime_to_ns(ktime_sub(line->job.last_edge, line->job.start)) : 0;
}

static enum hrtimer_restart wb_line_timer(struct hrtimer *timer)
{
	struct wb_line *line = container_of(timer, struct wb_line, timer);
	struct wb_job *job = &line->job;
	ktime_t begin = ktime_get();
	ktime_t next, now, earliest;
	bool send = false, more, asap, late = false;
	unsigned long flags;

	raw_spin_lock_irqsave(&line->lock, flags);
	if (!line->busy) {
		raw_spin_unlock_irqrestore(&line->lock, flags);
		return HRTIMER_NORESTART;
	}

	if (job->chatter_left) {
		job->chatter_left--;
		send = wb_line_edge(line, !line->high);
		job->edges++;
		job->last_edge = begin;
	} else {
		bool high = !job->press_next;	/* pressed pulls the pin low */

		job->press_next = !job->press_next;
		job->actions_left--;
		job->next_action = ktime_add_ns(job->next_action, job->period_ns);
		if (line->high != high) {
			send = wb_line_edge(line, high);
			job->edges++;
			job->last_edge = begin;
			job->chatter_left = 2 * job->bounce;
		}
	}
	if (job->chatter_left)
		next = ktime_add_ns(hrtimer_get_expires(timer), job->gap_ns);
	else
		next = job->next_action;
	asap = !job->chatter_left && !job->period_ns;	/* burst N 0 */
	more = job->chatter_left || job->actions_left;
	raw_spin_unlock_irqrestore(&line->lock, flags);

	if (send)
		wb_line_send(line);

	if (more) {
		now = ktime_get();
		earliest = ktime_add_ns(now, max_t(s64, WB_MIN_SLACK_NS,
					ktime_to_ns(ktime_sub(now, begin))));
		if (ktime_before(next, earliest)) {
			next = earliest;
			late = !asap;
		}
	}

	raw_spin_lock_irqsave(&line->lock, flags);
	if (!line->busy) {		/* stopped while we were sending */
		raw_spin_unlock_irqrestore(&line->lock, flags);
		return HRTIMER_NORESTART;
	}
	if (!more) {
		/* Done only now: the last edge's interrupt has been sent. */
		wb_line_end_job(line);
		raw_spin_unlock_irqrestore(&line->lock, flags);
		wake_up_all(&line->wq);
		return HRTIMER_NORESTART;
	}
	if (late)
		line->stats.late++;
	hrtimer_set_expires(timer, next);
	raw_spin_unlock_irqrestore(&line->lock, flags);
	return HRTIMER_RESTART;
}

/*
 * Start a job of @actions presses and releases, @period_ns apart, the
 * first a press when @press_first.  Returns its id in @id.
 */
static int wb_line_start(struct wb_line *line, u32 actions, bool press_first,
			 u64 period_ns, u64 *id)
{
	struct wb_job *job = &line->job;
	int ret = 0;

	mutex_lock(&line->ctl_lock);
	if (READ_ONCE(line->board->dying)) {
		ret = -ENODEV;
		goto out;
	}
	raw_spin_lock_irq(&line->lock);
	if (line->busy)
		ret = -EBUSY;
	raw_spin_unlock_irq(&line->lock);
	if (ret)
		goto out;

	/* The callback that ended the last job may still be returning. */
	hrtimer_cancel(&line->timer);

	raw_spin_lock_irq(&line->lock);
	memset(job, 0, sizeof(*job));
	job->actions_left = actions;
	job->press_next = press_first;
	job->bounce = line->bounce;
	job->gap_ns = (u64)line->bounce_gap_us * NSEC_PER_USEC;
	job->period_ns = period_ns;
	job->start = ktime_get();
	job->next_action = job->start;
	line->busy = true;
	*id = ++line->job_id;
	line->stats.jobs++;
	raw_spin_unlock_irq(&line->lock);

	hrtimer_start(&line->timer, job->start, HRTIMER_MODE_ABS_HARD);
out:
	mutex_unlock(&line->ctl_lock);
	return ret;
}

/* Stop the running job if it is @id, or whatever runs if @id is 0. */
static void wb_line_stop(struct wb_line *line, u64 id)
{
	bool stopped = false;

	mutex_lock(&line->ctl_lock);
	raw_spin_lock_irq(&line->lock);
	if (line->busy && (!id || id == line->job_id)) {
		wb_line_end_job(line);
		stopped = true;
	}
	raw_spin_unlock_irq(&line->lock);
	hrtimer_cancel(&line->timer);
	mutex_unlock(&line->ctl_lock);
	if (stopped)
		wake_up_all(&line->wq);
}

static bool wb_line_done(struct wb_line *line, u64 id)
{
	unsigned long flags;
	bool done;

	raw_spin_lock_irqsave(&line->lock, flags);
	done = line->done_id >= id;
	raw_spin_unlock_irqrestore(&line->lock, flags);
	return done;
}

static bool wb_line_idle(struct wb_line *line)
{
	unsigned long flags;
	bool busy;

	raw_spin_lock_irqsave(&line->lock, flags);
	busy = line->busy;
	raw_spin_unlock_irqrestore(&line->lock, flags);
	return !busy;
}

/* ---------------------------------------------------------------------- */
/* debugfs: lineN/ctl and lineN/stats                                     */

static int wb_parse_time(unsigned int us, unsigned int min, u64 *ns)
{
	if (us < min || us > WB_MAX_TIME_US)
		return -EINVAL;
	*ns = (u64)us * NSEC_PER_USEC;
	return 0;
}

/*
 * One command per write:
 *	press, release		one action: one edge if the level changes
 *	click [HOLD_US]		press, release HOLD_US later (default 1000)
 *	burst N INTERVAL_US	N presses, each followed by its release: 2N
 *				actions, a press every INTERVAL_US and its
 *				release INTERVAL_US/2 later; 0: as fast as the
 *				board can.  2N edges from a released button.
 *	bounce K [GAP_US]	later actions that change the level add 2K
 *				edges, GAP_US apart (default 100)
 *	wait, stop, reset	wait for / stop the job, zero the counters
 *	unplug, plug		take the line's device (wb-button, wb-switch.N)
 *				away, as a hot-unplug: its driver's remove()
 *				runs, even with files open; and bring it back
 * press, release, click and burst return when the job's last edge has
 * been sent into the IRQ layer (its hard handler has run), at once with
 * O_NONBLOCK; -EBUSY while another job runs on the line.
 */
static int wb_plug(unsigned int offset, bool in);

static ssize_t wb_ctl_write(struct file *file, const char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	struct wb_line *line = file->private_data;
	unsigned int a = 0, b = 0;
	char buf[64], cmd[16], extra;
	u64 id, ns;
	int n, ret;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';

	n = sscanf(buf, "%15s %u %u %c", cmd, &a, &b, &extra);
	if (n < 1 || n > 3)
		return -EINVAL;

	if (!strcmp(cmd, "press") && n == 1) {
		ret = wb_line_start(line, 1, true, 0, &id);
	} else if (!strcmp(cmd, "release") && n == 1) {
		ret = wb_line_start(line, 1, false, 0, &id);
	} else if (!strcmp(cmd, "click") && n <= 2) {
		ret = wb_parse_time(n == 2 ? a : WB_DEFAULT_HOLD_US, 1, &ns);
		if (!ret)
			ret = wb_line_start(line, 2, true, ns, &id);
	} else if (!strcmp(cmd, "burst") && n == 3) {
		if (a < 1 || a > WB_MAX_CLICKS)
			return -EINVAL;
		ret = wb_parse_time(b, 0, &ns);
		if (!ret)
			ret = wb_line_start(line, 2 * a, true, ns / 2, &id);
	} else if (!strcmp(cmd, "bounce") && n <= 3) {
		if (n < 2 || a > WB_MAX_BOUNCE)
			return -EINVAL;
		if (n == 3 && (b < 1 || b > WB_MAX_TIME_US))
			return -EINVAL;
		raw_spin_lock_irq(&line->lock);
		line->bounce = a;
		line->bounce_gap_us = n == 3 ? b : WB_DEFAULT_GAP_US;
		raw_spin_unlock_irq(&line->lock);
		return count;
	} else if (!strcmp(cmd, "wait") && n == 1) {
		if (wait_event_interruptible(line->wq, wb_line_idle(line)))
			return -ERESTARTSYS;
		return count;
	} else if (!strcmp(cmd, "stop") && n == 1) {
		wb_line_stop(line, 0);
		return count;
	} else if ((!strcmp(cmd, "plug") || !strcmp(cmd, "unplug")) && n == 1) {
		mutex_lock(&line->board->plug_lock);
		ret = wb_plug(line->offset, cmd[0] == 'p');
		mutex_unlock(&line->board->plug_lock);
		return ret ? ret : count;
	} else if (!strcmp(cmd, "reset") && n == 1) {
		raw_spin_lock_irq(&line->lock);
		memset(&line->stats, 0, sizeof(line->stats));
		raw_spin_unlock_irq(&line->lock);
		return count;
	} else {
		return -EINVAL;
	}
	if (ret)
		return ret;

	if (file->f_flags & O_NONBLOCK)
		return count;
	/* A signal ends the command: it stops the job it started. */
	if (wait_event_interruptible(line->wq, wb_line_done(line, id))) {
		wb_line_stop(line, id);
		return -EINTR;
	}
	return count;
}

static const struct file_operations wb_ctl_fops = {
	.owner	= THIS_MODULE,
	.open	= simple_open,
	.write	= wb_ctl_write,
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
	.llseek	= no_llseek,	/* 6.12: gone; no .llseek means no seeking */
#endif
};

static int wb_stats_show(struct seq_file *s, void *unused)
{
	struct wb_line *line = s->private;
	struct wb_stats st;
	bool high, armed, masked, pending, busy;
	unsigned int trigger;
	u32 bounce, gap;

	raw_spin_lock_irq(&line->lock);
	st = line->stats;
	high = line->high;
	armed = line->armed;
	masked = line->masked;
	pending = line->pending;
	trigger = line->trigger;
	busy = line->busy;
	bounce = line->bounce;
	gap = line->bounce_gap_us;
	raw_spin_unlock_irq(&line->lock);

	seq_printf(s, "line %u\n", line->offset);
	seq_printf(s, "level %d\n", high);
	seq_printf(s, "pressed %d\n", !high);
	seq_printf(s, "busy %d\n", busy);
	seq_printf(s, "irq_requested %d\n", armed);
	seq_printf(s, "trigger %s\n", wb_trigger_name(trigger));
	seq_printf(s, "masked %d\n", masked);
	seq_printf(s, "pending %d\n", pending);
	seq_printf(s, "bounce %u\n", bounce);
	seq_printf(s, "bounce_gap_us %u\n", gap);
	seq_printf(s, "edges %llu\n", st.edges);
	seq_printf(s, "rising %llu\n", st.rising);
	seq_printf(s, "falling %llu\n", st.falling);
	seq_printf(s, "ignored %llu\n", st.ignored);
	seq_printf(s, "irqs %llu\n", st.irqs);
	seq_printf(s, "delivered %llu\n", st.delivered);
	seq_printf(s, "deferred %llu\n", st.deferred);
	seq_printf(s, "replays %llu\n", st.replays);
	seq_printf(s, "coalesced %llu\n", st.coalesced);
	seq_printf(s, "dropped %llu\n", st.dropped);
	seq_printf(s, "late %llu\n", st.late);
	seq_printf(s, "jobs %llu\n", st.jobs);
	seq_printf(s, "last_job_edges %llu\n", st.last_job_edges);
	seq_printf(s, "last_job_ns %llu\n", st.last_job_ns);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(wb_stats);

static void wb_debugfs_init(struct wb_board *board)
{
	char name[16];
	unsigned int i;

	board->dir = debugfs_create_dir(WB_DEBUGFS_DIR, NULL);
	for (i = 0; i < WB_NLINES; i++) {
		struct dentry *d;

		snprintf(name, sizeof(name), "line%u", i);
		d = debugfs_create_dir(name, board->dir);
		debugfs_create_file("ctl", 0200, d, &board->lines[i],
				    &wb_ctl_fops);
		debugfs_create_file("stats", 0444, d, &board->lines[i],
				    &wb_stats_fops);
	}
}

/* ---------------------------------------------------------------------- */
/* The controller's platform driver                                       */

static int wb_gpio_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct gpio_irq_chip *girq;
	struct wb_board *board;
	struct gpio_chip *gc;
	unsigned int i;
	int ret;

	board = devm_kzalloc(dev, sizeof(*board), GFP_KERNEL);
	if (!board)
		return -ENOMEM;

	for (i = 0; i < WB_NLINES; i++) {
		struct wb_line *line = &board->lines[i];

		line->board = board;
		line->offset = i;
		raw_spin_lock_init(&line->lock);
		mutex_init(&line->ctl_lock);
		init_waitqueue_head(&line->wq);
		hrtimer_init(&line->timer, CLOCK_MONOTONIC,
			     HRTIMER_MODE_ABS_HARD);
		line->timer.function = wb_line_timer;
		line->high = true;		/* the pull-up */
		line->masked = true;
		line->bounce_gap_us = WB_DEFAULT_GAP_US;
	}
	board->replay = IRQ_WORK_INIT_HARD(wb_replay);
	mutex_init(&board->plug_lock);

	gc = &board->gc;
	gc->label = WB_CHIP_LABEL;
	gc->parent = dev;
	gc->owner = THIS_MODULE;
	gc->get = wb_gpio_get;
	gc->get_direction = wb_gpio_get_direction;
	gc->direction_input = wb_gpio_direction_input;
	gc->base = -1;
	gc->ngpio = WB_NLINES;
	gc->names = wb_line_names;
	gc->can_sleep = false;

	girq = &gc->irq;
	gpio_irq_chip_set_chip(girq, &wb_irq_chip);
	girq->handler = handle_edge_irq;
	girq->default_type = IRQ_TYPE_NONE;

	ret = gpiochip_add_data(gc, board);
	if (ret) {
		dev_err(dev, "cannot add GPIO chip: %d\n", ret);
		return ret;
	}
	wb_debugfs_init(board);
	platform_set_drvdata(pdev, board);
	dev_info(dev, "%u lines, GPIOs %d-%d, button on line 0\n",
		 WB_NLINES, gc->base, gc->base + WB_NLINES - 1);
	return 0;
}

/*
 * Runs only at module unload, when nobody holds a line or its IRQ (each
 * pins this module) and no debugfs file is open (same): what may still run
 * is a job started with O_NONBLOCK, and its replay work.
 */
static void wb_gpio_remove(struct platform_device *pdev)
{
	struct wb_board *board = platform_get_drvdata(pdev);
	unsigned int i;

	debugfs_remove_recursive(board->dir);
	WRITE_ONCE(board->dying, true);
	for (i = 0; i < WB_NLINES; i++)
		wb_line_stop(&board->lines[i], 0);
	irq_work_sync(&board->replay);
	gpiochip_remove(&board->gc);
	for (i = 0; i < WB_NLINES; i++)
		mutex_destroy(&board->lines[i].ctl_lock);
	mutex_destroy(&board->plug_lock);
}

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 11, 0)
/* Before 6.11 .remove returned an int, which the driver core ignored. */
static int wb_gpio_remove_int(struct platform_device *pdev)
{
	wb_gpio_remove(pdev);
	return 0;
}
#endif

static struct platform_driver wb_gpio_driver = {
	.probe	= wb_gpio_probe,
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	.remove	= wb_gpio_remove,
#else
	.remove	= wb_gpio_remove_int,
#endif
	.driver	= {
		.name			= WB_CHIP_LABEL,
		.suppress_bind_attrs	= true,
		.probe_type		= PROBE_FORCE_SYNCHRONOUS,
	},
};

/* ---------------------------------------------------------------------- */
/* The board file                                                         */

/*
 * The consumers.  The button: line 0, pulled up, pressed to ground, so
 * active low.  The switches: lines 1 to 3, each its own device
 * (wb-switch.1 .. wb-switch.3), wired the same way, with the name "switch".
 */
#define WB_LOOKUP(name, dev, line, con)					\
static struct gpiod_lookup_table name = {				\
	.dev_id = dev,							\
	.table = {							\
		GPIO_LOOKUP(WB_CHIP_LABEL, line, con, GPIO_ACTIVE_LOW),	\
		{ }							\
	},								\
}

WB_LOOKUP(wb_button_lookup, WB_BUTTON_DEV, 0, WB_BUTTON_CON_ID);
WB_LOOKUP(wb_sw1_lookup, WB_SWITCH_DEV ".1", 1, WB_SWITCH_CON_ID);
WB_LOOKUP(wb_sw2_lookup, WB_SWITCH_DEV ".2", 2, WB_SWITCH_CON_ID);
WB_LOOKUP(wb_sw3_lookup, WB_SWITCH_DEV ".3", 3, WB_SWITCH_CON_ID);

static struct gpiod_lookup_table *const wb_lookups[WB_NLINES] = {
	&wb_button_lookup, &wb_sw1_lookup, &wb_sw2_lookup, &wb_sw3_lookup,
};

static struct platform_device *wb_gpio_pdev;
static struct platform_device *wb_consumers[WB_NLINES];	/* under plug_lock */

/*
 * Plug the consumer device of a line in, or pull it out.  Pulling it out
 * unregisters the platform device: the driver bound to it gets remove()
 * at once, whether or not its files are still open, as with a USB device
 * pulled from its socket.  Caller holds the board's plug_lock (or is the
 * module's init or exit).
 */
static int wb_plug(unsigned int offset, bool in)
{
	struct platform_device *pdev;

	if (in) {
		if (wb_consumers[offset])
			return -EEXIST;
		pdev = offset ?
			platform_device_register_simple(WB_SWITCH_DEV, offset,
							NULL, 0) :
			platform_device_register_simple(WB_BUTTON_DEV,
							PLATFORM_DEVID_NONE,
							NULL, 0);
		if (IS_ERR(pdev))
			return PTR_ERR(pdev);
		wb_consumers[offset] = pdev;
		return 0;
	}
	if (!wb_consumers[offset])
		return -ENODEV;
	platform_device_unregister(wb_consumers[offset]);
	wb_consumers[offset] = NULL;
	return 0;
}

static int __init wb_board_init(void)
{
	unsigned int i;
	int ret;

	ret = platform_driver_register(&wb_gpio_driver);
	if (ret)
		return ret;

	wb_gpio_pdev = platform_device_register_simple(WB_CHIP_LABEL,
						       PLATFORM_DEVID_NONE,
						       NULL, 0);
	if (IS_ERR(wb_gpio_pdev)) {
		ret = PTR_ERR(wb_gpio_pdev);
		goto err_driver;
	}
	if (!platform_get_drvdata(wb_gpio_pdev)) {
		ret = -ENODEV;		/* probe failed and said why */
		goto err_gpio_dev;
	}

	for (i = 0; i < WB_NLINES; i++)
		gpiod_add_lookup_table(wb_lookups[i]);
	for (i = 0; i < WB_NLINES; i++) {
		ret = wb_plug(i, true);
		if (ret)
			goto err_consumers;
	}
	return 0;

err_consumers:
	while (i--)
		wb_plug(i, false);
	for (i = 0; i < WB_NLINES; i++)
		gpiod_remove_lookup_table(wb_lookups[i]);
err_gpio_dev:
	platform_device_unregister(wb_gpio_pdev);
err_driver:
	platform_driver_unregister(&wb_gpio_driver);
	return ret;
}
module_init(wb_board_init);

static void __exit wb_board_exit(void)
{
	unsigned int i;

	for (i = 0; i < WB_NLINES; i++) {
		if (wb_consumers[i])
			wb_plug(i, false);
		gpiod_remove_lookup_table(wb_lookups[i]);
	}
	platform_device_unregister(wb_gpio_pdev);
	platform_driver_unregister(&wb_gpio_driver);
}
module_exit(wb_board_exit);

MODULE_DESCRIPTION("Simulated GPIO button board for the signal-driven I/O workbook");
MODULE_LICENSE("GPL");
