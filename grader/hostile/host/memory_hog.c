/* memory_hog.c - hostile: allocates and touches memory without end. Expected: stopped by the memory
 * limit, the machine stays usable. */
#include <stdlib.h>
#include <string.h>

int main(void)
{
	for (;;) {
		char *p = malloc(1 << 20);

		if (p)
			memset(p, 1, 1 << 20);
	}
}
