/* asyncorder.c - a test harness (LD_PRELOAD) that checks a program's set-up
 * for signal-driven I/O at the moment it turns O_ASYNC on.
 *
 * The order matters, and a wrong order fails only when an event happens in
 * the gap, which a test cannot count on.  So this library looks at the
 * state at the one moment that counts: when fcntl(fd, F_SETFL, flags)
 * turns O_ASYNC on (from then on, every event sends the signal):
 *
 *   - the file must have an owner (F_GETOWN != 0): without one the
 *     signals of the events before F_SETOWN go to nobody;
 *   - the signal the file will send (F_GETSIG, or SIGIO) must have a
 *     handler: its default action terminates the process;
 *   - the file must be O_NONBLOCK, because a handler that reads until
 *     EAGAIN would otherwise block in its last read(2).
 *
 * With ASYNCORDER_SETSIG=1 in the environment (lab 5, one realtime signal
 * per event) it also requires, at that moment:
 *
 *   - a realtime signal chosen with F_SETSIG: without it, the events
 *     before F_SETSIG send plain SIGIO;
 *   - that signal's handler installed with SA_SIGINFO (or it gets no
 *     si_fd, si_code, si_band);
 *   - a handler for SIGIO too: the kernel sends it when the realtime
 *     queue is full, and its default action terminates.
 *
 * With ASYNCORDER_BLOCKED=1 (lab 6: no handler, the signals are taken with
 * sigwaitinfo() or a signalfd) the handlers are not asked for; instead, at
 * that moment, in the thread that turns O_ASYNC on:
 *
 *   - the file's signal and SIGIO must be blocked: a signal that comes
 *     before the program waits for it, unblocked and with no handler,
 *     runs its default action (terminate).
 *
 * It also reports open(2) with O_ASYNC in the flags, which sets the flag
 * without registering the file with the driver.  Each finding is one line
 * on stderr, "asyncorder: ...", after the line "asyncorder: O_ASYNC turned
 * on"; the call itself goes on unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *msg)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "asyncorder: %s\n", msg);

	if (n > 0)
		(void)!write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

typedef int (*fcntl_fn)(int, int, ...);

static fcntl_fn real_fcntl(void)
{
	static fcntl_fn f;

	if (f == NULL)
		f = (fcntl_fn)dlsym(RTLD_NEXT, "fcntl");
	return f;
}

#define MAX_FDS 1024

static int reported_setfl;
static char turned_on[MAX_FDS];	/* O_ASYNC turned on by an F_SETFL seen here */

static void check(int fd, long newflags)
{
	fcntl_fn f = real_fcntl();
	int old = f(fd, F_GETFL), sig, chosen, blocked = getenv("ASYNCORDER_BLOCKED") != NULL;
	struct sigaction sa;

	if (old == -1 || !(newflags & O_ASYNC))
		return;
	if (old & O_ASYNC) {
		/* Already on, and not by an F_SETFL seen here: open() set it. */
		if (!reported_setfl && !(fd >= 0 && fd < MAX_FDS && turned_on[fd])) {
			reported_setfl = 1;
			say("F_SETFL with O_ASYNC changed nothing: the flag was already set (by open() with O_ASYNC?), "
			    "so the driver's .fasync was not called");
		}
		return;
	}
	say("O_ASYNC turned on");
	if (fd >= 0 && fd < MAX_FDS)
		turned_on[fd] = 1;
	if (f(fd, F_GETOWN) == 0)
		say("O_ASYNC was turned on while the file had no owner (F_SETOWN must come first)");
	sig = f(fd, F_GETSIG);
	chosen = sig;
	if (sig == 0)
		sig = SIGIO;
	if (blocked) {
		sigset_t mask;

		if (sigprocmask(SIG_BLOCK, NULL, &mask) == 0 &&
		    (!sigismember(&mask, sig) || !sigismember(&mask, SIGIO)))
			say("O_ASYNC was turned on while the file's signal or SIGIO was not blocked in this thread "
			    "(with no handler, one that came before the wait would terminate the process)");
	} else if (sigaction(sig, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
	    (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
		say(sa.sa_handler == SIG_DFL ?
		    "O_ASYNC was turned on before the signal's handler was installed (its default action terminates)" :
		    "O_ASYNC was turned on while the signal is ignored");
	if (getenv("ASYNCORDER_SETSIG") != NULL) {
		if (chosen == SIGIO)
			say("F_SETSIG chose SIGIO, not a realtime signal: SIGIO does not queue, one per event "
			    "(choose SIGRTMIN)");
		else if (sig == SIGIO)
			say("O_ASYNC was turned on before F_SETSIG chose a realtime signal: the events in between send "
			    "plain SIGIO");
		else if (!blocked && sigaction(sig, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO))
			say("O_ASYNC was turned on while the realtime signal's handler lacks SA_SIGINFO (no si_fd, "
			    "si_code or si_band)");
		if (!blocked && sigaction(SIGIO, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
		    (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN))
			say("O_ASYNC was turned on while SIGIO has no handler: the kernel sends it when the realtime "
			    "queue is full, and its default action terminates");
	}
	if (!(newflags & O_NONBLOCK))
		say("O_ASYNC was turned on for a file without O_NONBLOCK: a handler that reads until EAGAIN blocks");
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (cmd == F_SETFL)
		check(fd, (long)arg);
	return real_fcntl()(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (cmd == F_SETFL)
		check(fd, (long)arg);
	return real_fcntl()(fd, cmd, arg);
}

typedef int (*open_fn)(const char *, int, ...);

static int opened(const char *name, const char *path, int flags, mode_t mode)
{
	open_fn f = (open_fn)dlsym(RTLD_NEXT, name);

	if (flags & O_ASYNC)
		say("open() was called with O_ASYNC: that sets the flag without registering the file; "
		    "turn it on with fcntl(F_SETFL) after opening");
	(void)path;
	return f(path, flags, mode);
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = va_arg(ap, mode_t);
	va_end(ap);
	return opened("open", path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = va_arg(ap, mode_t);
	va_end(ap);
	return opened("open64", path, flags, mode);
}
