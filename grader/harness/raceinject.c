/* raceinject.c - a test harness (LD_PRELOAD) that hits the lost wake-up
 * window every time.
 *
 * A program that waits for a signal with
 *
 *         while (!got)
 *                 pause();
 *
 * loses the wake-up when the signal arrives after the test of `got` and
 * before pause() starts sleeping.  In real life that gap is hit rarely; this
 * library makes it certain.  It interposes the calls a program can wait with
 * (pause, sigsuspend, sigwait, sigwaitinfo, sigtimedwait, sleep, usleep,
 * nanosleep) and, on the FIRST such call, sends the awaited signal to the
 * process with kill(getpid(), sig) just before entering the real call:
 *
 *   - naive pause(): the signal is not blocked, so the handler runs inside
 *     kill(), sets the flag, and the real pause() then sleeps forever;
 *   - block + test + sigsuspend(&old): the signal is blocked, so it stays
 *     pending; sigsuspend unblocks it atomically, the handler runs, the call
 *     returns and the loop sees the flag;
 *   - sigwait and sleep loops also see the signal (pending, or flag set).
 *
 * The signal is RACEINJECT_SIGNAL (a number; default SIGUSR1).  When
 * RACEINJECT_PROGRAM is set, only a program of that name fires (the sandbox
 * that starts the program inherits LD_PRELOAD too, and must be left alone).
 * Each firing is logged to stderr as "raceinject: sent signal N before CALL()".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fired;

static void *real(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (f == NULL) {
		static const char msg[] = "raceinject: cannot find the real function\n";

		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		_exit(127);
	}
	return f;
}

static void put(const char *s)
{
	(void)!write(STDERR_FILENO, s, strlen(s));
}

static void fire(const char *call)
{
	int saved_errno = errno, sig = SIGUSR1;
	const char *env;
	char num[8];
	int n = 0;

	if (fired)
		return;
	fired = 1;
	env = getenv("RACEINJECT_PROGRAM");
	if (env && *env && strcmp(env, program_invocation_short_name) != 0)
		return;
	env = getenv("RACEINJECT_SIGNAL");
	if (env && atoi(env) > 0 && atoi(env) < NSIG)
		sig = atoi(env);
	/* The message first: the handler may run inside kill(). */
	num[n++] = (char)('0' + sig / 10 % 10);
	num[n++] = (char)('0' + sig % 10);
	num[n] = '\0';
	put("raceinject: sent signal ");
	put(num[0] == '0' ? num + 1 : num);
	put(" before ");
	put(call);
	put("()\n");
	kill(getpid(), sig);
	errno = saved_errno;
}

int pause(void)
{
	int (*f)(void) = real("pause");

	fire("pause");
	return f();
}

int sigsuspend(const sigset_t *mask)
{
	int (*f)(const sigset_t *) = real("sigsuspend");

	fire("sigsuspend");
	return f(mask);
}

int sigwait(const sigset_t *set, int *sig)
{
	int (*f)(const sigset_t *, int *) = real("sigwait");

	fire("sigwait");
	return f(set, sig);
}

int sigwaitinfo(const sigset_t *set, siginfo_t *info)
{
	int (*f)(const sigset_t *, siginfo_t *) = real("sigwaitinfo");

	fire("sigwaitinfo");
	return f(set, info);
}

int sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *timeout)
{
	int (*f)(const sigset_t *, siginfo_t *, const struct timespec *) = real("sigtimedwait");

	fire("sigtimedwait");
	return f(set, info, timeout);
}

unsigned int sleep(unsigned int seconds)
{
	unsigned int (*f)(unsigned int) = real("sleep");

	fire("sleep");
	return f(seconds);
}

int usleep(useconds_t usec)
{
	int (*f)(useconds_t) = real("usleep");

	fire("usleep");
	return f(usec);
}

int nanosleep(const struct timespec *req, struct timespec *rem)
{
	int (*f)(const struct timespec *, struct timespec *) = real("nanosleep");

	fire("nanosleep");
	return f(req, rem);
}
