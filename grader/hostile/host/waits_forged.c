/* waits_forged.c - hostile: prints every line lab 1's tests look for at once, then waits for any
 * signal and exits 0 when one comes. Expected: no points; what a program printed before the
 * signal reached it is not its reaction to the signal. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void leave(int sig)
{
	(void)sig;
	_exit(0);
}

int main(void)
{
	struct sigaction sa;
	int pid = (int)getpid();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = leave;
	for (int s = 1; s < 65; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &sa, NULL);
	printf("worker: ready (pid %d)\nready (pid %d)\n", pid, pid);
	printf("summary: 10 items done, checksum 55, stopped by SIGINT\n");
	printf("summary: 10 items done, checksum 55, stopped by SIGTERM\n");
	printf("SIGUSR2 caught 1 time(s)\nlines: 2, SIGUSR1 caught: 3\n");
	printf("SIGUSR1 delivered 1 time(s)\nSIGRTMIN delivered 10 time(s)\n");
	fflush(stdout);
	for (;;)
		pause();
}
