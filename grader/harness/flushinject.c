/* flushinject.c - a test harness (LD_PRELOAD) that makes an event happen
 * while a program flushes its queued realtime signals.
 *
 * After a queue overflow, lab 5's program throws the stale queued signals
 * away, then reads every source.  The order matters, and it fails only when
 * an event comes in between, which a test cannot count on.  So this
 * library makes that event itself, at the one moment that counts: during
 * the flush, it writes one line, "note injected", to the FIFO named by
 * $FLUSHINJECT_FIFO (the program's own notes source, which it has open):
 *
 *   - flushing with sigtimedwait(): right after the first call that took a
 *     realtime signal, so the queue has room and the note's signal is
 *     queued, and the flush takes it too;
 *   - flushing by ignoring the signal (sigaction() or signal() with
 *     SIG_IGN for a realtime signal): right after that call.
 *
 * A program that flushes first and reads after reads the note in the same
 * resynchronisation; one that reads first and flushes after has thrown the
 * note's signal away (or gets it only later), and the note waits.  It says
 * "flushinject: wrote the note during the flush" on stderr, once.
 *
 * The flush must not wait: the first sigtimedwait() whose timeout is not
 * zero is reported on stderr before the call ("flushinject: sigtimedwait
 * with a timeout of 0.050000000 s", or "with no timeout").
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int done;

static void say(const char *msg)
{
	(void)!write(STDERR_FILENO, msg, strlen(msg));
}

static void inject(void)
{
	const char *path = getenv("FLUSHINJECT_FIFO");
	static const char note[] = "note injected\n";
	int saved = errno, fd;

	if (done || path == NULL)
		return;
	done = 1;
	fd = open(path, O_WRONLY | O_NONBLOCK);
	if (fd == -1) {
		say("flushinject: cannot open the FIFO\n");
	} else {
		if (write(fd, note, sizeof(note) - 1) == (ssize_t)sizeof(note) - 1)
			say("flushinject: wrote the note during the flush\n");
		close(fd);
	}
	errno = saved;
}

typedef int (*sigtimedwait_fn)(const sigset_t *, siginfo_t *, const struct timespec *);

int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout)
{
	static sigtimedwait_fn real;
	static int timed;
	int sig;

	if (real == NULL)
		real = (sigtimedwait_fn)dlsym(RTLD_NEXT, "sigtimedwait");
	if (!timed && (timeout == NULL || timeout->tv_sec != 0 || timeout->tv_nsec != 0)) {
		char msg[96];

		timed = 1;	/* said before the call: it may never return */
		if (timeout == NULL)
			say("flushinject: sigtimedwait with no timeout (it waits until a signal comes)\n");
		else if (snprintf(msg, sizeof(msg), "flushinject: sigtimedwait with a timeout of %ld.%09ld s\n",
				  (long)timeout->tv_sec, (long)timeout->tv_nsec) > 0)
			say(msg);
	}
	sig = real(set, info, timeout);
	if (sig >= SIGRTMIN && sig <= SIGRTMAX)
		inject();
	return sig;
}

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	static sigaction_fn real;
	int ret;

	if (real == NULL)
		real = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
	ret = real(sig, act, old);
	if (ret == 0 && act != NULL && !(act->sa_flags & SA_SIGINFO) && act->sa_handler == SIG_IGN &&
	    sig >= SIGRTMIN && sig <= SIGRTMAX)
		inject();
	return ret;
}

typedef sighandler_t (*signal_fn)(int, sighandler_t);

sighandler_t signal(int sig, sighandler_t handler)
{
	static signal_fn real;
	sighandler_t ret;

	if (real == NULL)
		real = (signal_fn)dlsym(RTLD_NEXT, "signal");
	ret = real(sig, handler);
	if (ret != SIG_ERR && handler == SIG_IGN && sig >= SIGRTMIN && sig <= SIGRTMAX)
		inject();
	return ret;
}
