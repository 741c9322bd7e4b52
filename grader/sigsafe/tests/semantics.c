/*
 * semantics.c - installing handlers through sigsafe changes nothing
 *
 * Usage: semantics MODE
 *   signal   signal(): the handler stays for a second signal (BSD semantics),
 *            SA_RESTART is set, signal() returns the previous handler
 *   sysv     signal() in a program built with -std=c11 (System V one-shot):
 *            prints "first", and the second SIGUSR1 kills the process;
 *            the handler on_sysv calls fprintf()
 *            (built with -std=gnu11, it prints "first" and "sysv ok")
 *   oldact   sigaction()'s oldact shows the user's handler, flags and mask,
 *            for a plain and an SA_SIGINFO handler, and restoring it works
 *   reset    SA_RESETHAND: after one delivery the disposition is SIG_DFL
 *   sigset   sigset() with SIG_HOLD holds the signal and releases it
 * Each mode prints "MODE ok" when every check passed (except sysv).
 */
#ifdef __STRICT_ANSI__
/* -std=c11: sigaction() is POSIX, signal() stays ISO C's (__sysv_signal) */
#define _POSIX_C_SOURCE 200809L
#else
#define _GNU_SOURCE		/* -std=gnu11: glibc's BSD signal(), sigset() */
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t count, other;

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "check failed: %s\n", what);
		exit(1);
	}
}

static void on_usr1(int sig)
{
	(void)sig;
	count++;
}

static void on_usr2(int sig)
{
	(void)sig;
	other++;
}

static void on_info(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)info;
	(void)uc;
	other++;
}

/* not async-signal-safe: shows that sigsafe saw the handler */
static void on_sysv(int sig)
{
	count++;
	fprintf(stderr, "on_sysv: signal %d\n", sig);
}

static void say(const char *s)
{
	ssize_t r = write(STDOUT_FILENO, s, strlen(s));

	(void)r;
}

static void mode_signal(void)
{
	struct sigaction old;

	check(signal(SIGUSR1, on_usr1) == SIG_DFL, "signal() returns SIG_DFL first");
	raise(SIGUSR1);
	raise(SIGUSR1);
	check(count == 2, "the handler ran twice");
	check(sigaction(SIGUSR1, NULL, &old) == 0, "sigaction query");
	check(old.sa_handler == on_usr1, "sigaction shows the handler");
	check(old.sa_flags & SA_RESTART, "signal() sets SA_RESTART");
	check(!(old.sa_flags & (SA_RESETHAND | SA_SIGINFO)), "no SA_RESETHAND, no SA_SIGINFO");
	check(signal(SIGUSR1, on_usr2) == on_usr1, "signal() returns the old handler");
	check(signal(SIGUSR1, SIG_IGN) == on_usr2, "signal() returns the old handler again");
	raise(SIGUSR1);
	check(signal(SIGUSR1, SIG_DFL) == SIG_IGN, "SIG_IGN passes through");
	check(signal(SIGKILL, on_usr1) == SIG_ERR, "signal(SIGKILL) fails");
}

static void mode_sysv(void)
{
	signal(SIGUSR1, on_sysv);
	raise(SIGUSR1);
	if (count == 1)
		say("first\n");
	raise(SIGUSR1);		/* one-shot: the default action kills us */
	say("still alive\n");
}

static void mode_oldact(void)
{
	struct sigaction sa, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sa.sa_flags = SA_RESTART;
	check(sigaction(SIGINT, &sa, NULL) == 0, "sigaction 1");

	sa.sa_handler = on_usr2;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	check(sigaction(SIGINT, &sa, &old) == 0, "sigaction 2");
	check(old.sa_handler == on_usr1, "oldact has the first handler");
	check(old.sa_flags & SA_RESTART, "oldact has SA_RESTART");
	check(!(old.sa_flags & SA_SIGINFO), "oldact has no SA_SIGINFO");
	check(sigismember(&old.sa_mask, SIGUSR2) == 1, "oldact has the mask");

	/* put the first one back, as a library would, and use it */
	check(sigaction(SIGINT, &old, NULL) == 0, "restore");
	raise(SIGINT);
	check(count == 1 && other == 0, "the restored handler ran");

	sa.sa_sigaction = on_info;
	sa.sa_flags = SA_SIGINFO;
	check(sigaction(SIGINT, &sa, NULL) == 0, "sigaction 3");
	check(sigaction(SIGINT, NULL, &old) == 0, "query");
	check(old.sa_sigaction == on_info, "oldact has the SA_SIGINFO handler");
	check(old.sa_flags & SA_SIGINFO, "oldact has SA_SIGINFO");
	check(!(old.sa_flags & SA_RESTART), "oldact has no SA_RESTART");
	raise(SIGINT);
	check(other == 1, "the SA_SIGINFO handler ran");
}

static void mode_reset(void)
{
	struct sigaction sa, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESETHAND;
	check(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
	raise(SIGUSR1);
	check(count == 1, "the handler ran");
	check(sigaction(SIGUSR1, NULL, &old) == 0, "query");
	check(old.sa_handler == SIG_DFL, "SA_RESETHAND reset it to SIG_DFL");
}

#ifdef __STRICT_ANSI__
static void mode_sigset(void)
{
	check(0, "sigset() is not available under -std=c11");
}
#else
/* sigset() is obsolete, and still found in old code */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void mode_sigset(void)
{
	sigset_t pending;

	check(sigset(SIGUSR1, on_usr1) == SIG_DFL, "sigset returns SIG_DFL");
	raise(SIGUSR1);
	check(count == 1, "the handler ran");
	check(sigset(SIGUSR1, SIG_HOLD) == on_usr1, "SIG_HOLD returns the handler");
	raise(SIGUSR1);
	check(count == 1, "held");
	check(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1), "pending");
	check(sigset(SIGUSR1, on_usr1) == SIG_HOLD, "sigset returns SIG_HOLD");
	check(count == 2, "released and handled");
}
#endif

int main(int argc, char *argv[])
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} modes[] = {
		{ "signal", mode_signal }, { "sysv", mode_sysv },
		{ "oldact", mode_oldact }, { "reset", mode_reset },
		{ "sigset", mode_sigset },
	};
	size_t i;

	if (argc != 2) {
		fprintf(stderr, "Usage: %s signal|sysv|oldact|reset|sigset\n", argv[0]);
		return 2;
	}
	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(argv[1], modes[i].name) == 0) {
			modes[i].fn();
			printf("%s ok\n", argv[1]);
			return 0;
		}
	}
	fprintf(stderr, "unknown mode %s\n", argv[1]);
	return 2;
}
