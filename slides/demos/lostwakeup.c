/* lostwakeup.c - the lost wake-up of "test the flag, then pause()".
 *
 *     while (!got)
 *             pause();
 *
 * If the signal arrives after the test and before pause() starts, the
 * handler sets `got` and pause() then sleeps until some OTHER signal.  The
 * window is a few instructions wide, so this demo makes the signal arrive
 * exactly there, with raise(3), to show what happens every time the race
 * is lost.  An alarm(2) after 2 s ends the wait so the demo terminates.
 *
 * The fix: block the signal, test the flag, then sigsuspend(&old), which
 * unblocks and sleeps in one atomic step; a signal that came in between is
 * pending, and sigsuspend() returns at once.
 *
 * usage: lostwakeup pause | sigsuspend
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(EXIT_FAILURE);
}

static volatile sig_atomic_t got, timed_out;

static void on_usr1(int sig)
{
	(void)sig;
	got = 1;
}

static void on_alrm(int sig)
{
	(void)sig;
	timed_out = 1;
}

static void catch(int sig, void (*fn)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = fn;
	if (sigaction(sig, &sa, NULL) == -1)
		die("sigaction");
}

int main(int argc, char *argv[])
{
	sigset_t usr1, old;
	int use_suspend;

	if (argc != 2 || (strcmp(argv[1], "pause") != 0 &&
			  strcmp(argv[1], "sigsuspend") != 0)) {
		fprintf(stderr, "usage: %s pause | sigsuspend\n", argv[0]);
		return EXIT_FAILURE;
	}
	use_suspend = strcmp(argv[1], "sigsuspend") == 0;
	catch(SIGUSR1, on_usr1);
	catch(SIGALRM, on_alrm);
	alarm(2);			/* the watchdog */

	if (use_suspend) {
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		if (sigprocmask(SIG_BLOCK, &usr1, &old) == -1)
			die("sigprocmask");
		while (!got && !timed_out) {
			raise(SIGUSR1);		/* arrives here: stays pending */
			if (sigsuspend(&old) == -1 && errno != EINTR)
				die("sigsuspend");
		}
	} else {
		while (!got && !timed_out) {
			raise(SIGUSR1);		/* arrives here: handler runs now */
			pause();		/* ...and this sleeps on */
		}
	}
	if (timed_out && !use_suspend)
		printf("pause: got=%d but still asleep 2 s later: lost wake-up\n",
		       (int)got);
	else
		printf("%s: woken at once, got=%d\n", argv[1], (int)got);
	return EXIT_SUCCESS;
}
