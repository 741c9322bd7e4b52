/* loop.c - hostile: spins forever without printing. Expected: every test times out, the grader goes on. */
int main(void)
{
	for (volatile unsigned long i = 0;; i++)
		;
}
