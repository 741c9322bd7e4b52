/* ignores_term.c - hostile: ignores every signal it can, then waits forever. Expected: killed with
 * SIGKILL at the timeout. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_IGN);
	puts("ready");
	fflush(stdout);
	for (;;)
		pause();
}
