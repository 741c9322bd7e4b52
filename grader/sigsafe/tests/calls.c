/*
 * calls.c - a handler that calls one kind of function, for the sigsafe tests
 *
 * Usage: calls WHERE WHAT
 *   WHERE  handler: the SIGINT handler on_int makes the calls (raise(SIGINT))
 *          main:    main makes them, then raises SIGINT with a handler that
 *                   writes only
 *   WHAT   printf, puts (printf("...\n"), which the compiler makes puts()),
 *          malloc (malloc and free), exit, stdio (fopen, fputs, fclose),
 *          strerror, unlocked (fputs_unlocked, fwrite_unlocked,
 *          fflush_unlocked on a stream main opened), err (warn, warnx, error,
 *          error_at_line; none of them exits), safe (write, read,
 *          sigprocmask, kill, getpid, time, ...), _exit
 * The program ends by writing "done" (or the handler ends it for exit/_exit).
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <error.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *what;
static int in_handler;
static char *volatile keep;	/* stops the compiler from removing malloc/free */
static volatile sig_atomic_t caught;
static FILE *sink;		/* /dev/null, opened by main */
static const char *volatile text = "text";	/* not a constant: no inlining */

static void die(const char *msg)
{
	perror(msg);
	exit(EXIT_FAILURE);
}

static void say(const char *s)
{
	ssize_t r = write(STDOUT_FILENO, s, strlen(s));

	(void)r;
}

static void calls(int sig)
{
	if (strcmp(what, "printf") == 0) {
		printf("signal %d\n", sig);
		fflush(stdout);
	} else if (strcmp(what, "puts") == 0) {
		printf("caught a signal\n");
	} else if (strcmp(what, "malloc") == 0) {
		keep = malloc(64);
		free(keep);
	} else if (strcmp(what, "exit") == 0) {
		if (in_handler)
			exit(0);
	} else if (strcmp(what, "stdio") == 0) {
		FILE *f = fopen("/dev/null", "w");

		if (f) {
			fputs("x", f);
			fclose(f);
		}
	} else if (strcmp(what, "unlocked") == 0) {
		fputs_unlocked(text, sink);
		fwrite_unlocked(text, 1, strlen(text), sink);
		fflush_unlocked(sink);
	} else if (strcmp(what, "err") == 0) {
		warn("warn %d", sig);
		warnx("warnx %d", sig);
		error(0, 0, "error %d", sig);
		error_at_line(0, EINTR, "calls.c", 1, "error_at_line %d", sig);
	} else if (strcmp(what, "strerror") == 0) {
		keep = strerror(EINTR);
	} else if (strcmp(what, "safe") == 0) {
		sigset_t set, old;
		struct timespec ts;
		char buf[8];
		int fd;

		say("in the handler\n");
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, &old);
		kill(getpid(), SIGUSR1);	/* blocked, ignored */
		sigprocmask(SIG_SETMASK, &old, NULL);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		(void)time(NULL);
		(void)getpid();
		(void)raise(0);
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			if (read(fd, buf, sizeof(buf)) < 0)
				say("read failed\n");
			close(fd);
		}
		sleep(0);
		alarm(0);
	} else if (strcmp(what, "_exit") == 0) {
		if (in_handler) {
			say("done\n");
			_exit(0);
		}
	}
}

static void on_int(int sig)
{
	caught = 1;
	if (in_handler)
		calls(sig);
	else
		say("the handler ran\n");
}

int main(int argc, char *argv[])
{
	struct sigaction sa;

	if (argc != 3 || (strcmp(argv[1], "handler") && strcmp(argv[1], "main"))) {
		fprintf(stderr, "Usage: %s handler|main WHAT\n", argv[0]);
		return 2;
	}
	in_handler = strcmp(argv[1], "handler") == 0;
	what = argv[2];
	sink = fopen("/dev/null", "w");
	if (sink == NULL)
		die("/dev/null");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGUSR1, &sa, NULL) == -1)
		die("sigaction SIGUSR1");
	sa.sa_handler = on_int;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGINT, &sa, NULL) == -1)
		die("sigaction SIGINT");

	if (!in_handler)
		calls(0);
	if (raise(SIGINT) != 0)
		die("raise");
	if (!caught)
		say("the handler did not run\n");
	say("done\n");
	if (strcmp(what, "exit") == 0)
		exit(0);	/* outside the handler: fine */
	return 0;
}
