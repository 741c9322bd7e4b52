/* handler_blocks.c - hostile: catches every catchable signal with a handler that never returns.
 * Expected: tests that signal it time out; the grader kills it and goes on. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void stuck(int sig)
{
	(void)sig;
	for (;;)
		pause();
}

int main(void)
{
	struct sigaction sa = { .sa_handler = stuck };

	sigemptyset(&sa.sa_mask);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &sa, NULL);
	puts("ready");
	fflush(stdout);
	for (;;)
		pause();
}
