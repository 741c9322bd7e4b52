/* forkbomb.c - hostile: forks without end. Expected: the process limit stops it, the grader goes on and
 * no process is left afterwards. */
#include <unistd.h>

int main(void)
{
	for (;;)
		(void)fork();
}
