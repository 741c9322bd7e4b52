/*
 * jump.c - handlers that leave with siglongjmp(), for the sigsafe tests
 *
 * Usage: jump MODE
 *   out      on_int (SIGINT) siglongjmps back to main.  main then calls
 *            printf() from deep in a recursion (deeper than the handler
 *            ran), and raises SIGUSR1, whose handler on_usr1 calls puts().
 *            Only puts() from on_usr1 may be reported.
 *   inner    on_usr2 (SIGUSR2) sets a jump point and raises SIGINT, whose
 *            handler on_int siglongjmps back into on_usr2, which then calls
 *            malloc(): that is reported for SIGUSR2 (on_usr2), not SIGINT.
 *   builtin  like out, but on_builtin leaves with __builtin_longjmp, which
 *            the compiler inlines: no call for sigsafe to see.
 * Every mode prints "jump ok" at the end.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sigjmp_buf back, into_usr2;
static void *builtin_env[5];
static char *volatile keep;

static void die(const char *msg)
{
	perror(msg);
	exit(EXIT_FAILURE);
}

static void on_int_out(int sig)
{
	siglongjmp(back, sig);
}

static void on_int_inner(int sig)
{
	siglongjmp(into_usr2, sig);
}

static void on_builtin(int sig)
{
	(void)sig;
	__builtin_longjmp(builtin_env, 1);
}

static void on_usr1(int sig)
{
	(void)sig;
	puts("on_usr1");
}

static void on_usr2(int sig)
{
	(void)sig;
	if (sigsetjmp(into_usr2, 1) == 0)
		raise(SIGINT);
	keep = malloc(8);
	free(keep);
}

/* main's calls, from deeper in the stack than the handler ran */
static int deep(int n)
{
	char pad[256];

	memset(pad, n, sizeof(pad));
	if (n > 0)
		return deep(n - 1) + pad[n % sizeof(pad)];
	printf("back in main\n");
	fflush(stdout);
	keep = malloc(8);
	free(keep);
	return 0;
}

static void install(int sig, void (*fn)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) == -1)
		die("sigaction");
}

int main(int argc, char *argv[])
{
	sigset_t set;

	if (argc != 2) {
		fprintf(stderr, "Usage: %s out|inner|builtin\n", argv[0]);
		return 2;
	}
	install(SIGUSR1, on_usr1);
	if (strcmp(argv[1], "out") == 0) {
		install(SIGINT, on_int_out);
		if (sigsetjmp(back, 1) == 0)
			raise(SIGINT);
	} else if (strcmp(argv[1], "inner") == 0) {
		install(SIGINT, on_int_inner);
		install(SIGUSR2, on_usr2);
		raise(SIGUSR2);
	} else if (strcmp(argv[1], "builtin") == 0) {
		install(SIGINT, on_builtin);
		if (__builtin_setjmp(builtin_env) == 0)
			raise(SIGINT);
		/* __builtin_longjmp does not restore the signal mask */
		sigemptyset(&set);
		sigaddset(&set, SIGINT);
		if (sigprocmask(SIG_UNBLOCK, &set, NULL) == -1)
			die("sigprocmask");
	} else {
		fprintf(stderr, "unknown mode %s\n", argv[1]);
		return 2;
	}
	deep(40);
	raise(SIGUSR1);
	printf("jump ok\n");
	return 0;
}
