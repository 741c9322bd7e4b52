/* witness_signals.c - known signals, for the witness's own test (test_witness.py).

   witness_signals paths    3 SIGUSR1 to a handler; 5 SIGUSR2 by sigwaitinfo(),
                            then 2 more while one is pending (1 merged); 7 SIGHUP
                            by signalfd
   witness_signals child    fork; the child takes 2 SIGUSR1 by a handler
   witness_signals rt       RLIMIT_SIGPENDING 2, SIGRTMIN blocked: 4 sigqueue()
                            (2 queued, 2 refused: queue full), 2 kill() (info
                            lost: the bit is set, nothing queued); 1 SIGUSR1
                            ignored (SIG_IGN)
   witness_signals wait     print "ready" and wait for SIGUSR1 (a handler), exit 0

   Every mode prints "pid N" first.
*/
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void
die(const char *what)
{
    perror(what);
    exit(EXIT_FAILURE);
}

static void
handler(int sig)
{
    (void) sig;
    got++;
}

static void
catch(int sig)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = handler;
    if (sigaction(sig, &sa, NULL) == -1)
        die("sigaction");
}

static void
block(int sig)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, sig);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        die("sigprocmask");
}

static void
paths(void)
{
    struct signalfd_siginfo ss;
    sigset_t set;
    siginfo_t si;
    int fd;

    catch(SIGUSR1);
    for (int i = 0; i < 3; i++)
        raise(SIGUSR1);
    block(SIGUSR2);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    for (int i = 0; i < 5; i++) {
        raise(SIGUSR2);
        if (sigwaitinfo(&set, &si) == -1)
            die("sigwaitinfo");
    }
    raise(SIGUSR2);
    raise(SIGUSR2);                     /* merged: already pending */
    block(SIGHUP);
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    fd = signalfd(-1, &set, 0);
    if (fd == -1)
        die("signalfd");
    for (int i = 0; i < 7; i++) {
        raise(SIGHUP);
        if (read(fd, &ss, sizeof(ss)) != sizeof(ss))
            die("read signalfd");
    }
}

static void
rt(void)
{
    struct rlimit rl = { 2, 2 };
    union sigval v = { 0 };

    if (setrlimit(RLIMIT_SIGPENDING, &rl) == -1)
        die("setrlimit");
    block(SIGRTMIN);
    for (int i = 0; i < 4; i++)
        sigqueue(getpid(), SIGRTMIN, v);        /* the last 2: EAGAIN */
    kill(getpid(), SIGRTMIN);
    kill(getpid(), SIGRTMIN);
    signal(SIGUSR1, SIG_IGN);
    raise(SIGUSR1);
}

int
main(int argc, char *argv[])
{
    const char *mode = argc > 1 ? argv[1] : "";
    pid_t child;

    printf("pid %d\n", (int) getpid());
    fflush(stdout);
    if (strcmp(mode, "paths") == 0) {
        paths();
    } else if (strcmp(mode, "child") == 0) {
        child = fork();
        if (child == -1)
            die("fork");
        if (child == 0) {
            catch(SIGUSR1);
            raise(SIGUSR1);
            raise(SIGUSR1);
            _exit(got == 2 ? 0 : 1);
        }
        if (waitpid(child, NULL, 0) == -1)
            die("waitpid");
        printf("child %d\n", (int) child);
    } else if (strcmp(mode, "rt") == 0) {
        rt();
    } else if (strcmp(mode, "wait") == 0) {
        sigset_t none;

        catch(SIGUSR1);
        block(SIGUSR1);
        sigemptyset(&none);
        printf("ready\n");
        fflush(stdout);
        while (!got)
            sigsuspend(&none);
    } else {
        fprintf(stderr, "usage: %s paths|child|rt|wait\n", argv[0]);
        return 2;
    }
    return 0;
}
