/* compile_error.c - hostile: does not compile. Expected: the compiler's first errors in the report. */
int main(void)
{
	return undeclared_variable
}
