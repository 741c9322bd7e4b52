/* exec_hog.c - hostile: a sanitized program has no address-space limit (ASan reserves terabytes),
 * and what it execs inherits none: it execs perl to build a 3 GiB string. Expected: the grader's
 * watchdog on the tree's resident memory kills it, and says so. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	execl("/usr/bin/perl", "perl", "-e", "$x = 'a' x (3 * 1024 * 1024 * 1024); sleep 30;", (char *)NULL);
	perror("perl");
	return 1;
}
