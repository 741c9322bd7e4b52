/* ticker.c - a handler that calls printf() hangs the program: see it, fix it.
 *
 * main() prints numbered lines as fast as it can, while an interval timer
 * (setitimer(2), ITIMER_REAL) sends SIGALRM every INTERVAL microseconds,
 * 1000 by default: a thousand signals a second.  Each tick must be reported
 * with a line "tick N".
 *
 * As you got it, the SIGALRM handler prints that line itself, with printf().
 * Sooner or later a tick arrives while main's printf() is half-way through
 * taking the lock of stdout: glibc has set the lock word but not yet written
 * down who owns it.  The handler's printf() sees a lock held by someone else
 * and waits for it, on a futex, for ever: the only one who could release it
 * is main, and main cannot run again until the handler returns.  In a
 * terminal that takes a few seconds; with stdout on /dev/null, milliseconds.
 * The program does not crash, it stops: find where with
 *     cat /proc/PID/wchan            (futex_wait_queue on Linux 6.1)
 *     gdb -p PID -batch -ex bt       (the handler's printf waiting for the
 *                                     lock inside main's printf)
 * and compare the futex address in /proc/PID/syscall with the address of
 * stdout's lock that the program prints at the start.
 *
 * The fix is the rule of the chapter: the handler only counts the tick, and
 * main, between two lines, prints the ticks it has not reported yet.
 *
 * usage: ticker [-o FILE] [TICKS [INTERVAL_US]]
 *
 *   TICKS        stop after that many ticks (default 0: run until killed)
 *   INTERVAL_US  microseconds between two SIGALRM (default 1000)
 *   -o FILE      print the lines to FILE instead of stdout (-o /dev/null)
 *
 * On stderr it says "ticker: pid P, SIGALRM every U us, stdout's lock at
 * 0xADDR" at the start and, when it stops after TICKS ticks, "ticker: done,
 * L lines, T ticks, R reported by main" before it exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

static void usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-o FILE] [TICKS [INTERVAL_US]]\n", prog);
	exit(EXIT_FAILURE);
}

/* Ticks so far.  Only the handler changes it; main only reads it. */
static volatile sig_atomic_t ticks;

static void on_alrm(int sig)
{
	(void)sig;
	/* TODO 6: only count the tick here; main reports it (printf is not async-signal-safe). */
	ticks++;
	//> ticks++;
	//> printf("tick %d\n", (int)ticks);	/* hangs sooner or later: see the chapter */
	/* END TODO */
}

static long number(const char *s, const char *prog)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		usage(prog);
	return v;
}

int main(int argc, char *argv[])
{
	struct sigaction sa;
	struct itimerval it;
	long want = 0, interval = 1000;
	unsigned long lines = 0, from_main = 0;
	int opt;

	while ((opt = getopt(argc, argv, "o:")) != -1) {
		if (opt != 'o')
			usage(argv[0]);
		if (freopen(optarg, "w", stdout) == NULL)
			die(optarg);
	}
	if (argc - optind > 2)
		usage(argv[0]);
	if (optind < argc)
		want = number(argv[optind], argv[0]);
	if (optind + 1 < argc)
		interval = number(argv[optind + 1], argv[0]);
	if (interval < 1 || interval > 999999 || want > 1000000000)
		usage(argv[0]);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alrm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGALRM, &sa, NULL) == -1)
		die("sigaction");

	/* stdout->_lock is glibc's: the lock every printf() to stdout takes. */
	fprintf(stderr, "ticker: pid %ld, SIGALRM every %ld us, stdout's lock at %p\n",
		(long)getpid(), interval, (void *)stdout->_lock);

	/* The first output to a stream allocates its buffer with malloc(), which
	 * has locks of its own: do it before the first tick can interrupt it. */
	printf("ticker: a line per loop, a tick line per SIGALRM\n");

	it.it_interval.tv_sec = 0;
	it.it_interval.tv_usec = interval;
	it.it_value = it.it_interval;
	if (setitimer(ITIMER_REAL, &it, NULL) == -1)
		die("setitimer");

	/* TODO 6: keep the number of the last tick you reported, and report new ones from this loop. */
	int reported = 0;
	//> int reported = 0;
	/* END TODO */
	while (want == 0 || ticks < want) {
		printf("line %lu\n", ++lines);
		/* TODO 6: if the handler counted a tick since the last report, print "tick N" here. */
		if (ticks != reported) {
			reported = ticks;
			printf("tick %d\n", reported);
			from_main++;
		}
		//> (void)reported;
		/* END TODO */
	}

	memset(&it, 0, sizeof(it));	/* no more ticks */
	if (setitimer(ITIMER_REAL, &it, NULL) == -1)
		die("setitimer");
	if (fflush(stdout) == EOF)
		die("stdout");
	fprintf(stderr, "ticker: done, %lu lines, %d ticks, %lu reported by main\n", lines, (int)ticks, from_main);
	return EXIT_SUCCESS;
}
