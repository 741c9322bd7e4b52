/*
 * siginfo.c - an SA_SIGINFO handler (three arguments) under sigsafe
 *
 * Usage: siginfo
 * Sends itself SIGUSR1 with sigqueue() and the value 42.  The handler
 * on_usr1 checks that it got the signal number, si_code SI_QUEUE, our pid,
 * the value and a context, then calls fprintf() (not async-signal-safe).
 * main prints "siginfo ok" when every check passed.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t good, calls;

static void die(const char *msg)
{
	perror(msg);
	exit(EXIT_FAILURE);
}

static void on_usr1(int sig, siginfo_t *info, void *ucontext)
{
	calls++;
	good = sig == SIGUSR1 && info && info->si_signo == SIGUSR1 &&
	       info->si_code == SI_QUEUE && info->si_pid == getpid() &&
	       info->si_value.sival_int == 42 && ucontext != NULL;
	fprintf(stderr, "on_usr1: signal %d, code %d\n", sig, info->si_code);
}

int main(int argc, char *argv[])
{
	struct sigaction sa;
	union sigval v = { .sival_int = 42 };

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "Usage: siginfo\n");
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGUSR1, &sa, NULL) == -1)
		die("sigaction");
	if (sigqueue(getpid(), SIGUSR1, v) == -1)	/* delivered before it returns */
		die("sigqueue");
	printf("siginfo %s (%d call)\n", good && calls == 1 ? "ok" : "WRONG", (int)calls);
	return 0;
}
