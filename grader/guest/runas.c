/* runas.c

   Start a student's program in the lab VM as the unprivileged user
   "student" (uid and gid 1000), never as root.

   The grader's shell in the VM runs as root: it loads modules, presses the
   button and reads the kernel's state.  The programs under test must not
   share that power (a program running as root could overwrite the
   grader's own helpers in /lab/.grader, or read what they print), so the
   grader starts each one through this helper, which gives up root for
   good before exec: supplementary groups, then the group, then the user,
   and checks that root cannot be regained.

   It also sets what a test asks for, so that neither the shell that
   starts it nor this helper are affected:

       -e NAME=VALUE     put NAME=VALUE in the program's environment
                         (LD_PRELOAD, SIGSAFE_LOG: set here, they do not
                         apply to runas itself)
       -l sigpending=N   lower RLIMIT_SIGPENDING (queued signals per real
                         user) to N, soft and hard
       -d DIR            change to DIR first

   Usage: runas [-e NAME=VALUE]... [-l sigpending=N] [-d DIR] -- PROGRAM [ARG...]
*/
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define STUDENT_UID 1000
#define STUDENT_GID 1000
#define MAX_ENV 16

static void __attribute__((noreturn))
fail(const char *what)
{
    fprintf(stderr, "runas: %s: %s\n", what, strerror(errno));
    exit(126);
}

static void __attribute__((noreturn))
usage(void)
{
    fprintf(stderr, "Usage: runas [-e NAME=VALUE]... [-l sigpending=N] [-d DIR] -- PROGRAM [ARG...]\n");
    exit(125);
}

int
main(int argc, char *argv[])
{
    char *env[MAX_ENV];
    int nenv = 0, opt;
    const char *dir = NULL;
    long sigpending = -1;

    while ((opt = getopt(argc, argv, "+e:l:d:")) != -1) {
        switch (opt) {
        case 'e':
            if (nenv == MAX_ENV || strchr(optarg, '=') == NULL)
                usage();
            env[nenv++] = optarg;
            break;
        case 'l':
            if (strncmp(optarg, "sigpending=", 11) != 0)
                usage();
            sigpending = strtol(optarg + 11, NULL, 10);
            if (sigpending < 0)
                usage();
            break;
        case 'd':
            dir = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind >= argc)
        usage();

    if (sigpending >= 0) {
        struct rlimit rl = { (rlim_t) sigpending, (rlim_t) sigpending };

        if (setrlimit(RLIMIT_SIGPENDING, &rl) == -1)
            fail("setrlimit RLIMIT_SIGPENDING");
    }
    if (dir != NULL && chdir(dir) == -1)
        fail(dir);

    /* Groups first: once the uid is not 0 they can no longer be changed. */
    if (setgroups(0, NULL) == -1)
        fail("setgroups");
    if (setresgid(STUDENT_GID, STUDENT_GID, STUDENT_GID) == -1)
        fail("setresgid");
    if (setresuid(STUDENT_UID, STUDENT_UID, STUDENT_UID) == -1)
        fail("setresuid");
    if (setuid(0) == 0 || geteuid() == 0) {
        fprintf(stderr, "runas: could regain root; refusing to run the program\n");
        exit(126);
    }

    for (int i = 0; i < nenv; i++)
        if (putenv(env[i]) != 0)
            fail("putenv");

    execv(argv[optind], &argv[optind]);
    fail(argv[optind]);
}
