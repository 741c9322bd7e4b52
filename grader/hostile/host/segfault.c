/* segfault.c - hostile: writes through a null pointer. Expected: reported as a crash. */
#include <stdio.h>

int main(void)
{
	int *volatile p = NULL;

	puts("ready");
	fflush(stdout);
	*p = 42;
	return 0;
}
