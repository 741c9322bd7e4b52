/* sigprobe.c - a test harness (LD_PRELOAD) for lab 1 that makes three
 * mistakes show every time, where a normal run hides them.
 *
 * SIGPROBE_MODE selects what it does:
 *
 * reinstall  The "old cure" of signal()'s one-shot semantics re-installs the
 *            handler with signal() inside the handler, which leaves a window
 *            in which the disposition is SIG_DFL.  signal(), __sysv_signal()
 *            (signal() under -std=c11 or with _POSIX_C_SOURCE), sysv_signal()
 *            and bsd_signal() are interposed: when a handler is installed for
 *            the signal that is not the first such install, the signal is
 *            sent to the process just before the real call, inside the
 *            window.  Logged as "sigprobe: sent signal N as signal()
 *            re-installed a handler".  sigaction() is interposed too, and
 *            each handler installed for the signal is logged with its flags:
 *            "sigprobe: sigaction(N) sa_flags 0xF".
 *
 * again      A handler that assumes it runs once (count = 1 instead of
 *            count++) looks right when the signal is delivered once.
 *            sigprocmask() and pthread_sigmask() are interposed: the first
 *            call that unblocks the signal is followed, once it has returned
 *            (the pending one delivered), by a second one sent to the
 *            process, delivered before kill() returns.  Logged as "sigprobe:
 *            sent signal N again after the mask unblocked it".
 *
 * child      A SIGCHLD handler that reaps with a blocking waitpid() works as
 *            long as every child has ended.  fork() is interposed: the first
 *            call first starts one more child, which runs until the program
 *            ends (it pauses, and dies with its parent: PR_SET_PDEATHSIG).
 *            A wait call without WNOHANG that this child could satisfy
 *            (waitpid, wait, wait4; waitid with P_ALL) would block until the
 *            program ends, that is for ever: it is logged as "sigprobe:
 *            waitpid() without WNOHANG while child P was running", and the
 *            child is killed so that the call returns.
 *
 * The signal is SIGPROBE_SIGNAL (a number; default SIGUSR1).  When
 * SIGPROBE_PROGRAM is set, only a program of that name is probed (the sandbox
 * that starts the program inherits LD_PRELOAD too, and must be left alone).
 * Every log line goes to stderr with write(2).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t installs;	/* handlers installed by signal() */
static volatile sig_atomic_t sent_again;
static volatile pid_t runner;		/* the extra child, while it runs */

static void *real(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);

	if (f == NULL) {
		static const char msg[] = "sigprobe: cannot find the real function\n";

		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		_exit(127);
	}
	return f;
}

static void put(const char *s)
{
	(void)!write(STDERR_FILENO, s, strlen(s));
}

static void put_num(unsigned long v, int base)
{
	char buf[24], *p = buf + sizeof(buf) - 1;

	*p = '\0';
	do {
		*--p = "0123456789abcdef"[v % base];
		v /= base;
	} while (v != 0 && p > buf);
	put(p);
}

/* Is this the program to probe (SIGPROBE_PROGRAM), in this mode? */
static int armed(const char *mode)
{
	const char *prog = getenv("SIGPROBE_PROGRAM");
	const char *m = getenv("SIGPROBE_MODE");

	if (prog && *prog && strcmp(prog, program_invocation_short_name) != 0)
		return 0;
	return m && strcmp(m, mode) == 0;
}

static int probed_signal(void)
{
	const char *env = getenv("SIGPROBE_SIGNAL");

	if (env && atoi(env) > 0 && atoi(env) < NSIG)
		return atoi(env);
	return SIGUSR1;
}

/* ---- reinstall ------------------------------------------------------------ */

static void reinstalling(int sig, sighandler_t handler)
{
	int saved_errno = errno;

	if (handler == SIG_DFL || handler == SIG_IGN || handler == SIG_ERR ||
	    sig != probed_signal() || !armed("reinstall"))
		return;
	if (installs++ == 0)
		return;
	/* The message first: the signal may end the process. */
	put("sigprobe: sent signal ");
	put_num((unsigned long)sig, 10);
	put(" as signal() re-installed a handler\n");
	kill(getpid(), sig);
	errno = saved_errno;
}

#define WRAP_SIGNAL(fn)							\
sighandler_t fn(int sig, sighandler_t handler)				\
{									\
	sighandler_t (*f)(int, sighandler_t) = real(#fn);		\
									\
	reinstalling(sig, handler);					\
	return f(sig, handler);						\
}

WRAP_SIGNAL(signal)
WRAP_SIGNAL(__sysv_signal)
WRAP_SIGNAL(sysv_signal)
WRAP_SIGNAL(bsd_signal)

int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
{
	int (*f)(int, const struct sigaction *, struct sigaction *) = real("sigaction");
	int saved_errno = errno;

	if (act && sig == probed_signal() && act->sa_handler != SIG_DFL &&
	    act->sa_handler != SIG_IGN && armed("reinstall")) {
		put("sigprobe: sigaction(");
		put_num((unsigned long)sig, 10);
		put(") sa_flags 0x");
		put_num((unsigned int)act->sa_flags, 16);
		put("\n");
	}
	errno = saved_errno;
	return f(sig, act, oldact);
}

/* ---- again ------------------------------------------------------------------ */

static int blocked(int (*f)(int, const sigset_t *, sigset_t *), int sig)
{
	sigset_t now;

	return f(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, sig) == 1;
}

/* Call f (sigprocmask or pthread_sigmask); if that unblocked the signal, send it once more. */
static int mask_call(int (*f)(int, const sigset_t *, sigset_t *), int how,
		     const sigset_t *set, sigset_t *old)
{
	int sig = probed_signal(), was, r, saved_errno;

	if (sent_again || !armed("again"))
		return f(how, set, old);
	was = blocked(f, sig);
	r = f(how, set, old);
	saved_errno = errno;
	if (r == 0 && was && !blocked(f, sig)) {
		sent_again = 1;
		put("sigprobe: sent signal ");
		put_num((unsigned long)sig, 10);
		put(" again after the mask unblocked it\n");
		kill(getpid(), sig);
	}
	errno = saved_errno;
	return r;
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	return mask_call(real("sigprocmask"), how, set, old);
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	return mask_call(real("pthread_sigmask"), how, set, old);
}

/* ---- child -------------------------------------------------------------------- */

static void start_runner(void)
{
	pid_t (*f)(void) = real("fork");
	pid_t parent = getpid(), pid;

	pid = f();
	if (pid == -1)
		return;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		for (;;)
			pause();
	}
	runner = pid;
	put("sigprobe: started child ");
	put_num((unsigned long)pid, 10);
	put(", which runs until the program ends\n");
}

pid_t fork(void)
{
	pid_t (*f)(void) = real("fork");
	static int started;

	if (!started && armed("child")) {
		started = 1;
		start_runner();
	}
	return f();
}

/* A blocking wait that the running child could satisfy: log it, end the child. */
static void waiting(const char *call, int could_match, int options)
{
	int saved_errno = errno;
	pid_t r = runner;

	if (r <= 0 || (options & WNOHANG) || !could_match)
		return;
	runner = 0;
	put("sigprobe: ");
	put(call);
	put("() without WNOHANG while child ");
	put_num((unsigned long)r, 10);
	put(" was running\n");
	kill(r, SIGKILL);
	errno = saved_errno;
}

static int matches(pid_t pid)
{
	return pid == -1 || pid == 0 || pid == runner || (pid < -1 && getpgid(runner) == -pid);
}

pid_t waitpid(pid_t pid, int *status, int options)
{
	pid_t (*f)(pid_t, int *, int) = real("waitpid");

	waiting("waitpid", matches(pid), options);
	return f(pid, status, options);
}

pid_t wait(int *status)
{
	pid_t (*f)(int *) = real("wait");

	waiting("wait", 1, 0);
	return f(status);
}

pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
	pid_t (*f)(pid_t, int *, int, struct rusage *) = real("wait4");

	waiting("wait4", matches(pid), options);
	return f(pid, status, options, ru);
}

int waitid(idtype_t idtype, id_t id, siginfo_t *info, int options)
{
	int (*f)(idtype_t, id_t, siginfo_t *, int) = real("waitid");

	waiting("waitid", idtype == P_ALL || (idtype == P_PID && (pid_t)id == runner), options);
	return f(idtype, id, info, options);
}
