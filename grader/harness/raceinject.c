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
 * The signal is RACEINJECT_SIGNAL (a number; default SIGUSR1).
 *
 * With RACEINJECT_AT=fork it hits another window instead: the one between
 * fork() creating a child and the parent recording it.  fork() is
 * interposed, and in the parent it returns only once the child has exited
 * (waitid(WNOWAIT): the child stays a zombie, its SIGCHLD is sent), so a
 * parent that has SIGCHLD unblocked runs its handler, and reaps the child,
 * before it even knows the child's pid.  A parent that blocked SIGCHLD
 * before fork() gets it when it unblocks, after recording the child.  The
 * child must exit on its own soon (within RACEINJECT_FORK_WAIT_MS, default
 * 5000); each fork is logged as "raceinject: child P exited before fork()
 * returned".  The wait calls are left alone in this mode.
 *
 * When RACEINJECT_PROGRAM is set, only a program of that name fires (the
 * sandbox that starts the program inherits LD_PRELOAD too, and must be left
 * alone).  Each firing is logged to stderr as "raceinject: sent signal N
 * before CALL()".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

/* Is this the program to act on (RACEINJECT_PROGRAM), in this mode? */
static int armed(const char *mode)
{
	const char *env = getenv("RACEINJECT_PROGRAM");
	const char *at = getenv("RACEINJECT_AT");

	if (env && *env && strcmp(env, program_invocation_short_name) != 0)
		return 0;
	return strcmp(at && *at ? at : "wait", mode) == 0;
}

/* The digits of v (at most 10) at the end of buf[12]; returns the first. */
static char *digits(char buf[12], unsigned long v)
{
	char *p = buf + 11;

	*p = '\0';
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0 && p > buf);
	return p;
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
	if (!armed("wait"))
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

/* RACEINJECT_AT=fork: return to the parent only after the child has exited. */
pid_t fork(void)
{
	pid_t (*f)(void) = real("fork");
	int saved_errno, ms = 5000;
	const char *env;
	char num[12];
	pid_t pid;

	pid = f();
	if (pid <= 0 || !armed("fork"))
		return pid;
	saved_errno = errno;
	env = getenv("RACEINJECT_FORK_WAIT_MS");
	if (env && atoi(env) > 0)
		ms = atoi(env);
	for (int waited = 0; waited < ms; waited++) {
		struct timespec one_ms = { 0, 1000000 };
		siginfo_t si;

		/* WNOWAIT: look, do not reap.  If SIGCHLD is not blocked, its
		 * handler runs as this call returns and reaps the child: then
		 * the child is gone (ECHILD). */
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (si.si_pid == pid)
			break;
		clock_nanosleep(CLOCK_MONOTONIC, 0, &one_ms, NULL);
	}
	put("raceinject: child ");
	put(digits(num, (unsigned long)pid));
	put(" exited before fork() returned\n");
	errno = saved_errno;
	return pid;
}
