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
 * (pause, sigsuspend, sigwait, sigwaitinfo, sigtimedwait, ppoll, pselect,
 * sleep, usleep, nanosleep) and, on the FIRST such call, sends the awaited
 * signal to the process with kill(getpid(), sig) just before entering the
 * real call:
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
 * With RACEINJECT_AT=block it hits the window before the mask instead: the
 * signal is sent just before the first sigprocmask() or pthread_sigmask()
 * that blocks it while it is unblocked.  A program that blocks it before it
 * tests the flag runs the handler there and then sees the flag set; one
 * that tests the flag first and blocks afterwards sleeps with the flag
 * already set (its wait has not seen it), a lost wake-up again.
 *
 * With RACEINJECT_AT=exit nothing is sent; a program that ends (exit() or
 * a return from main) with the signal still blocked says so at exit:
 * "raceinject: signal N still blocked at exit" (a mask that was blocked
 * for a wait and never restored).
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
 * returned", and a child that exited with SIGCHLD still blocked (the parent
 * blocked it around fork() and the child never restored its mask) as
 * "raceinject: child P exited with SIGCHLD blocked".  The wait calls are
 * left alone in this mode.
 *
 * When RACEINJECT_PROGRAM is set, only a program of that name fires (the
 * sandbox that starts the program inherits LD_PRELOAD too, and must be left
 * alone).  Each firing is logged to stderr as "raceinject: sent signal N
 * before CALL()".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
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

/* Is this the program to act on (RACEINJECT_PROGRAM)? */
static int ours(void)
{
	const char *env = getenv("RACEINJECT_PROGRAM");

	return !(env && *env && strcmp(env, program_invocation_short_name) != 0);
}

/* ... and is MODE the one asked for (RACEINJECT_AT, default "wait")? */
static int armed(const char *mode)
{
	const char *at = getenv("RACEINJECT_AT");

	return ours() && strcmp(at && *at ? at : "wait", mode) == 0;
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

/* The awaited signal: RACEINJECT_SIGNAL, default SIGUSR1. */
static int awaited(void)
{
	const char *env = getenv("RACEINJECT_SIGNAL");

	if (env && atoi(env) > 0 && atoi(env) < NSIG)
		return atoi(env);
	return SIGUSR1;
}

/* Send the awaited signal before CALL, once, in MODE. */
static void fire_in(const char *mode, const char *call)
{
	int saved_errno = errno, sig;
	char num[12];

	if (fired || !armed(mode))
		return;
	fired = 1;
	sig = awaited();
	/* The message first: the handler may run inside kill(). */
	put("raceinject: sent signal ");
	put(digits(num, (unsigned long)sig));
	put(" before ");
	put(call);
	put("()\n");
	kill(getpid(), sig);
	errno = saved_errno;
}

static void fire(const char *call)
{
	fire_in("wait", call);
}

struct where {
	const void *addr;
	int inside;
};

/* dl_iterate_phdr() visits the program itself first: is w->addr in one of its segments? */
static int in_program(struct dl_phdr_info *info, size_t size, void *data)
{
	struct where *w = data;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && (uintptr_t)w->addr >= start && (uintptr_t)w->addr < start + ph->p_memsz)
			w->inside = 1;
	}
	return 1;	/* the first object only */
}

/* RACEINJECT_AT=block: before a mask change of the program's own (not of a library it
 * uses: a sanitizer or the grader's checker may block signals for a moment) that blocks
 * the awaited signal while it is unblocked. */
static void before_mask(int how, const sigset_t *set, const void *caller, const char *call)
{
	struct where w = { caller, 0 };
	sigset_t now;
	int saved_errno = errno;

	if (fired || set == NULL || (how != SIG_BLOCK && how != SIG_SETMASK) || !sigismember(set, awaited()))
		return;
	dl_iterate_phdr(in_program, &w);
	if (!w.inside)
		return;
	if (pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && !sigismember(&now, awaited()))
		fire_in("block", call);
	errno = saved_errno;
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	int (*f)(int, const sigset_t *, sigset_t *) = real("sigprocmask");

	before_mask(how, set, __builtin_return_address(0), "sigprocmask");
	return f(how, set, old);
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	int (*f)(int, const sigset_t *, sigset_t *) = real("pthread_sigmask");

	before_mask(how, set, __builtin_return_address(0), "pthread_sigmask");
	return f(how, set, old);
}

/* RACEINJECT_AT=exit: the awaited signal still blocked when the program exits. */
__attribute__((destructor)) static void at_exit(void)
{
	int saved_errno = errno;
	sigset_t now;
	char num[12];

	if (armed("exit") && pthread_sigmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, awaited()) == 1) {
		put("raceinject: signal ");
		put(digits(num, (unsigned long)awaited()));
		put(" still blocked at exit\n");
	}
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

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout, const sigset_t *mask)
{
	int (*f)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *) = real("ppoll");

	fire("ppoll");
	return f(fds, n, timeout, mask);
}

int pselect(int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *timeout, const sigset_t *mask)
{
	int (*f)(int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *) = real("pselect");

	fire("pselect");
	return f(n, r, w, e, timeout, mask);
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

/* Was SIG blocked in the (exited, not yet reaped) child PID?  Its mask stays
 * in /proc/PID/status (SigBlk) until it is reaped; 0 when it cannot be read
 * (the parent's handler reaped it already). */
static int child_blocked(pid_t pid, int sig)
{
	char path[40] = "/proc/", buf[4096], num[12], *p;
	unsigned long long mask = 0;
	ssize_t n;
	int fd;

	strcat(path, digits(num, (unsigned long)pid));
	strcat(path, "/status");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strstr(buf, "\nSigBlk:");
	if (p == NULL)
		return 0;
	for (p += strlen("\nSigBlk:"); *p == ' ' || *p == '\t'; p++)
		;
	for (; (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'); p++)
		mask = mask << 4 | (unsigned long long)(*p <= '9' ? *p - '0' : *p - 'a' + 10);
	return (int)(mask >> (sig - 1) & 1);
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
	if (child_blocked(pid, SIGCHLD)) {
		put("raceinject: child ");
		put(digits(num, (unsigned long)pid));
		put(" exited with SIGCHLD blocked\n");
	}
	errno = saved_errno;
	return pid;
}
