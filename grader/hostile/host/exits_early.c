/* exits_early.c - hostile: prints every line lab 1's tests look for, then exits 0 before any signal
 * is sent. Expected: no points; a signal sent to a process that has ended is ignored silently, so
 * the grader must see that the program was gone before the signal, not credit what it printed. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	int pid = (int)getpid();

	printf("worker: ready (pid %d)\nready (pid %d)\n", pid, pid);
	printf("summary: 10 items done, checksum 55, stopped by SIGINT\n");
	printf("summary: 10 items done, checksum 55, stopped by SIGTERM\n");
	printf("SIGUSR2 caught 1 time(s)\nlines: 2, SIGUSR1 caught: 3\n");
	printf("SIGUSR1 delivered 1 time(s)\nSIGRTMIN delivered 10 time(s)\n");
	return 0;
}
