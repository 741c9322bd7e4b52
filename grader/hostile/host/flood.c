/* flood.c - hostile: prints without end. Expected: killed at the output cap, nothing fills the disk. */
#include <stdio.h>

int main(void)
{
	for (;;)
		fputs("flood flood flood flood flood flood flood flood flood flood flood\n", stdout);
}
