/* forkbomb_setsid.c - hostile: every child calls setsid() first (a process group kill misses it),
 * then forks on; the parent forks without end. Expected: the process limit stops it, the grader
 * kills the whole tree, says the program started too many processes, and none is left. */
#include <unistd.h>

int main(void)
{
	for (;;)
		if (fork() == 0)
			(void)setsid();
}
