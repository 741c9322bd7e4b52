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

   It starts the program as a shell in the foreground would: every
   signal's action the default, none blocked (the grader's shell starts it
   in the background, where SIGINT and SIGQUIT are ignored).  It also sets
   what a test asks for, so that neither the shell that starts it nor this
   helper are affected:

       -e NAME=VALUE     put NAME=VALUE in the program's environment
                         (LD_PRELOAD: set here, it does not apply to runas
                         itself)
       -l sigpending=N   lower RLIMIT_SIGPENDING (queued signals per real
                         user) to N, soft and hard
       -d DIR            change to DIR first
       -a ARGV0          the program's argv[0] (default: PROGRAM)
       -c CGROUP         move into the cgroup (v2) folder CGROUP first, so
                         that every process the program makes, daemons
                         included, stays in it: the grader kills them all
                         with CGROUP/cgroup.kill, and sees who is left
       -s LOG            the async-signal-safety checker's log (a path in
                         a folder of root's; it must not exist): the
                         program gets the write end of a pipe as
                         descriptor SIGSAFE_FD, and a process of root's
                         appends what comes through it to LOG.  The
                         program cannot empty or rewrite what was written;
                         when the pipe is closed while the program still
                         runs (it closed the descriptor, or exec'd: the
                         checker keeps it close-on-exec), that process adds
                         the line "sigsafe-log: closed while the program
                         ran"; at the end it adds "sigsafe-log: end".

   Whatever it is asked, the program may write files of at most
   OUTPUT_LIMIT bytes (RLIMIT_FSIZE, soft and hard): its output goes to a
   file in the VM's memory, and an endless line must end in SIGXFSZ, not
   in a guest out of memory.

   Usage: runas [-e NAME=VALUE]... [-l sigpending=N] [-d DIR] [-a ARGV0]
                [-c CGROUP] [-s LOG] -- PROGRAM [ARG...]
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define STUDENT_UID 1000
#define STUDENT_GID 1000
#define MAX_ENV 16
#define OUTPUT_LIMIT (16 << 20)  /* bytes: a file the program writes, its output too */
#define SIGSAFE_FD 255          /* grader/sigsafe/sigsafe.c looks for its log here */
#define PF_EXITING 0x4          /* include/linux/sched.h: the task has begun to exit */

static void __attribute__((noreturn))
fail(const char *what)
{
    fprintf(stderr, "runas: %s: %s\n", what, strerror(errno));
    exit(126);
}

static void __attribute__((noreturn))
usage(void)
{
    fprintf(stderr, "Usage: runas [-e NAME=VALUE]... [-l sigpending=N] [-d DIR] [-a ARGV0] [-c CGROUP] "
            "[-s LOG] -- PROGRAM [ARG...]\n");
    exit(125);
}

static void
writeAll(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= n;
    }
}

/* Is process pid still running, not yet exiting?  (Its descriptors are
   closed in do_exit() after PF_EXITING is set, before it is a zombie.) */
static int
stillRunning(pid_t pid)
{
    char path[64], buf[512], *p;
    unsigned long flags = 0;
    char state = 'X';
    int fd, n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long) pid);
    fd = open(path, O_RDONLY);
    if (fd == -1)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    p = strrchr(buf, ')');      /* the name may hold anything */
    if (p == NULL || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2)
        return 0;
    return state != 'Z' && state != 'X' && !(flags & PF_EXITING);
}

/* The checker's log: a pipe whose reader, a grandchild of ours (root, so
   the program cannot signal it), copies it to LOG.  Returns the write end. */
static int
startLog(const char *log)
{
    int pfd[2], out;
    pid_t prog = getpid(), child;

    out = open(log, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (out == -1)
        fail(log);
    if (pipe2(pfd, O_CLOEXEC) == -1)
        fail("pipe");
    /* A fork that sends no SIGCHLD: this process becomes the program, and
       the kernel's record of its signals (the witness) must not show one. */
    child = syscall(SYS_clone, 0, NULL, NULL, NULL, NULL);
    if (child == -1)
        fail("clone");
    if (child == 0) {
        if (fork() != 0)
            _exit(0);           /* the reader is reparented: the program never waits for it */
        char buf[4096];
        ssize_t n;
        static const char closed[] = "sigsafe-log: closed while the program ran\n";
        static const char end[] = "sigsafe-log: end\n";

        prctl(PR_SET_NAME, "cat", 0, 0, 0);
        close(pfd[1]);
        for (int fd = 0; fd < 3; fd++)
            if (fd != out && fd != pfd[0])
                close(fd);
        for (;;) {
            n = read(pfd[0], buf, sizeof(buf));
            if (n == -1 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            writeAll(out, buf, n);
        }
        if (stillRunning(prog))
            writeAll(out, closed, sizeof(closed) - 1);
        writeAll(out, end, sizeof(end) - 1);
        _exit(0);
    }
    if (waitpid(child, NULL, __WALL) == -1)
        fail("waitpid");
    close(pfd[0]);
    close(out);
    return pfd[1];
}

static void
joinCgroup(const char *dir)
{
    char path[4096], pid[32];
    int fd, len;

    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1)
        fail(path);
    len = snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());
    if (write(fd, pid, len) != len)
        fail(path);
    close(fd);
}

int
main(int argc, char *argv[])
{
    char *env[MAX_ENV];
    int nenv = 0, opt, logFd = -1;
    const char *dir = NULL, *argv0 = NULL, *cgroup = NULL, *log = NULL;
    long sigpending = -1;

    while ((opt = getopt(argc, argv, "+e:l:d:a:c:s:")) != -1) {
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
        case 'a':
            argv0 = optarg;
            break;
        case 'c':
            cgroup = optarg;
            break;
        case 's':
            log = optarg;
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
    /* The log's reader first: it must stay out of the program's cgroup. */
    if (log != NULL)
        logFd = startLog(log);
    if (cgroup != NULL)
        joinCgroup(cgroup);
    if (logFd != -1) {
        if (logFd != SIGSAFE_FD) {
            if (dup2(logFd, SIGSAFE_FD) == -1)  /* without close-on-exec */
                fail("dup2");
            close(logFd);
        } else if (fcntl(logFd, F_SETFD, 0) == -1) {
            fail("fcntl");
        }
    }
    if (dir != NULL && chdir(dir) == -1)
        fail(dir);
    umask(022);                 /* the grader's shell keeps its files to itself (077) */

    {   /* after the log's reader started: it is root's, not limited */
        struct rlimit rl = { OUTPUT_LIMIT, OUTPUT_LIMIT };

        if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
            fail("setrlimit RLIMIT_FSIZE");
    }
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

    /* As a shell starts a program in the foreground: every signal's action
       the default and none blocked.  The grader's shell starts it in the
       background, where SIGINT and SIGQUIT are ignored (a shell without job
       control does that for `cmd &`): a program that never installs a
       handler would survive SIGINT here and not at the student's terminal. */
    {
        sigset_t none;

        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                (void) signal(sig, SIG_DFL);        /* EINVAL for glibc's own: fine */
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) == -1)
            fail("sigprocmask");
    }

    {
        const char *prog = argv[optind];

        if (argv0 != NULL)
            argv[optind] = (char *) argv0;
        execv(prog, &argv[optind]);
        fail(prog);
    }
}
