/* escapes.c - hostile: prints terminal control sequences (clear screen, cursor moves, a window
 * title by OSC, an 8-bit CSI, BEL, NUL, carriage returns) on stdout and stderr, then fails.
 * Expected: no points, and none of them reaches the console table, report.txt or results.json
 * as a control character: the grader shows them as escapes (\x1b). */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	static const char seq[] = "\x1b[2J\x1b[H\x1b]0;pwned\x07\x9b" "1;1H\r\x1b[1A\x1b[2K"
				  "All tests pass: full marks.\x00\x08\x7f\n";

	(void)!write(STDOUT_FILENO, seq, sizeof(seq) - 1);
	(void)!write(STDERR_FILENO, seq, sizeof(seq) - 1);
	return 3;
}
