/* escape.c - hostile: leaves a daemon behind (double fork, new session, named "hostile-escape") and
 * exits at once. Expected: no such process survives grading. */
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(void)
{
	if (fork() == 0) {
		setsid();
		if (fork() == 0) {
			prctl(PR_SET_NAME, "hostile-escape");
			for (;;)
				pause();
		}
		_exit(0);
	}
	puts("done");
	return 0;
}
