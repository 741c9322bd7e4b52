/* probe - the grader's view of /dev/button (lab 3).

   probe read                one blocking read(2) of up to 4 records
   probe nonblock            one read(2) with O_NONBLOCK
   probe poll                poll(2) before and after a press
   probe hold                open, wait for SIGUSR1, then read everything (O_NONBLOCK)
   probe sigio [-s] [-c]     F_SETOWN + O_ASYNC (-s: F_SETSIG SIGRTMIN), wait for the
                             signal; -c: then close the file and wait for SIGUSR1
   probe burst N US          a click, then `button burst N US`, then read everything
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct button_event { uint64_t time_ns; uint32_t seq; uint32_t pressed; };
#define DEV "/dev/button"
#define BATCH 16

static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static int open_dev(int flags)
{
    int fd = open(DEV, flags);
    if (fd == -1) {
        out("open-error %s\n", strerror(errno));
        exit(2);
    }
    return fd;
}

static void print_recs(const struct button_event *ev, ssize_t n)
{
    for (ssize_t i = 0; i < n; i++)
        out("rec %u %u %llu\n", ev[i].seq, ev[i].pressed, (unsigned long long) ev[i].time_ns);
}

/* Read with O_NONBLOCK until EAGAIN; print every record; return how many. */
static long drain(int fd, unsigned *last)
{
    struct button_event ev[BATCH];
    long total = 0;
    int fl = fcntl(fd, F_GETFL);

    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    for (;;) {
        ssize_t n = read(fd, ev, sizeof(ev));
        if (n == -1) {
            if (errno != EAGAIN)
                out("read-error %s\n", strerror(errno));
            break;
        }
        if (n == 0) {
            out("read-zero\n");
            break;
        }
        if (n % sizeof(ev[0]) != 0)
            out("partial %zd\n", n);
        print_recs(ev, n / sizeof(ev[0]));
        total += n / sizeof(ev[0]);
        if (last)
            *last = ev[n / sizeof(ev[0]) - 1].seq;
        if (total > 1000000)
            break;
    }
    fcntl(fd, F_SETFL, fl);
    out("drained %ld\n", total);
    return total;
}

static int run(char *const argv[])
{
    int status;
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid == -1 || waitpid(pid, &status, 0) == -1)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const char *signame(int sig)
{
    if (sig == SIGIO) return "SIGIO";
    if (sig == SIGRTMIN) return "SIGRTMIN";
    if (sig == SIGUSR1) return "SIGUSR1";
    return "other";
}

static int mode_sigio(int argc, char *argv[])
{
    int setsig = 0, closeafter = 0, fd, fl;
    sigset_t set;
    siginfo_t si;
    struct timespec ts = { 5, 0 };

    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-s")) setsig = 1;
        if (!strcmp(argv[i], "-c")) closeafter = 1;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGIO);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigdelset(&set, SIGUSR1);

    fd = open_dev(O_RDONLY | O_NONBLOCK);
    if (fcntl(fd, F_SETOWN, getpid()) == -1) { out("setown-error %s\n", strerror(errno)); return 2; }
    if (setsig && fcntl(fd, F_SETSIG, SIGRTMIN) == -1) { out("setsig-error %s\n", strerror(errno)); return 2; }
    fl = fcntl(fd, F_GETFL);
    if (fcntl(fd, F_SETFL, fl | O_ASYNC) == -1) { out("setfl-error %s\n", strerror(errno)); return 2; }
    out("registered fd %d\n", fd);

    if (sigtimedwait(&set, &si, &ts) == -1) {
        out("no-signal\n");
        return 1;
    }
    out("got %s code %d fd %d myfd %d\n", signame(si.si_signo), si.si_code,
        si.si_signo == SIGRTMIN ? si.si_fd : -1, fd);
    drain(fd, NULL);
    if (!closeafter) {
        close(fd);
        out("done\n");
        return 0;
    }
    close(fd);
    out("closed\n");
    sigaddset(&set, SIGUSR1);
    ts.tv_sec = 20;
    if (sigtimedwait(&set, &si, &ts) == -1) {
        out("after-close timeout\n");
        return 1;
    }
    if (si.si_signo == SIGUSR1) {
        out("after-close nothing\n");
        return 0;
    }
    out("after-close got %s\n", signame(si.si_signo));
    return 1;
}

int main(int argc, char *argv[])
{
    struct button_event ev[4];
    const char *mode = argc > 1 ? argv[1] : "";
    int fd;
    ssize_t n;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(mode, "read")) {
        fd = open_dev(O_RDONLY);
        out("open\n");
        n = read(fd, ev, sizeof(ev));
        if (n == -1) {
            out("read-error %s\n", strerror(errno));
            return 1;
        }
        out("read %zd\n", n);
        print_recs(ev, n / (ssize_t) sizeof(ev[0]));
        out("now %llu\n", now_ns());
        return 0;
    }
    if (!strcmp(mode, "nonblock")) {
        fd = open_dev(O_RDONLY | O_NONBLOCK);
        n = read(fd, ev, sizeof(ev));
        if (n == -1)
            out("read -1 %s\n", errno == EAGAIN ? "EAGAIN" : strerror(errno));
        else
            out("read %zd\n", n);
        return 0;
    }
    if (!strcmp(mode, "poll")) {
        struct pollfd p;
        int rc;
        fd = open_dev(O_RDONLY);
        p.fd = fd;
        p.events = POLLIN;
        rc = poll(&p, 1, 0);
        out("before %d %#x\n", rc, rc > 0 ? p.revents : 0);
        out("open\n");
        rc = poll(&p, 1, 5000);
        out("after %d %#x\n", rc, rc > 0 ? p.revents : 0);
        if (rc > 0 && (p.revents & POLLIN))
            drain(fd, NULL);
        return 0;
    }
    if (!strcmp(mode, "hold")) {
        sigset_t set;
        siginfo_t si;
        struct timespec ts = { 20, 0 };

        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        fd = open_dev(O_RDONLY);
        out("open\n");
        if (sigtimedwait(&set, &si, &ts) == -1) {
            out("timeout\n");
            return 1;
        }
        drain(fd, NULL);
        return 0;
    }
    if (!strcmp(mode, "sigio"))
        return mode_sigio(argc, argv);
    if (!strcmp(mode, "burst") && argc == 4) {
        char *click[] = { "/lab/button", "click", NULL };
        char *burst[] = { "/lab/button", "burst", argv[2], argv[3], NULL };
        unsigned last = 0;
        int rc;

        fd = open_dev(O_RDONLY | O_NONBLOCK);
        if ((rc = run(click)) != 0) { out("button-failed %d\n", rc); return 2; }
        drain(fd, &last);
        out("before %u\n", last);
        if ((rc = run(burst)) != 0) { out("button-failed %d\n", rc); return 2; }
        out("burst-done\n");
        drain(fd, NULL);
        return 0;
    }
    fprintf(stderr, "usage: probe read|nonblock|poll|sigio [-s] [-c]|burst N US\n");
    return 2;
}
