/* probe.c

   The grader's view of /dev/button (labs 3 and later): it uses the device
   the way the chapters describe and prints what it saw, one line per fact,
   so that a test can tell the driver's part from the student's program.
   It runs as root in the VM, out of the student programs' reach.

   probe read                 one blocking read(2) with room for 4 records
   probe hold SIZE...         open; after SIGUSR1, one O_NONBLOCK read(2) of
                              each SIZE bytes, then read everything
   probe steps                open; at each SIGUSR1 the next step: read
                              everything, close, exit
   probe efault               open; after SIGUSR1, read(2) into an address
                              that is not mapped, then read everything
   probe eintr                a blocking read(2); a SIGUSR1 handler without
                              SA_RESTART must interrupt it
   probe restart              a blocking read(2); a SIGUSR1 handler with
                              SA_RESTART (it says `handler`) must not end it
   probe nonblock             one read(2) of an empty device with O_NONBLOCK
   probe poll                 poll(2) with no wait, then a poll(2) that waits
                              for ever, then read, then poll(2) with no wait
   probe sigio [-s] [-c|-o]   F_SETOWN + O_ASYNC (-s: F_SETSIG SIGRTMIN); wait
                              for the signal, with no timeout (the grader sees
                              it asleep when none comes); then -c: close the
                              file, or -o: clear O_ASYNC; and wait for SIGUSR1
                              or a signal
   probe reopen N             open and close the device N times
   probe many N               open the device N times; after SIGUSR1 close all
   probe hammer               read(2) one record at a time until SIGUSR1,
                              then check that the sequence numbers only grew
   probe burst N US           a click, then `button burst N US`, then read
                              everything

   Usage: probe MODE [ARGS...]
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct button_event {
    uint64_t time_ns;
    uint32_t seq;
    uint32_t pressed;
};

#define DEV "/dev/button"
#define BATCH 16
#define REC ((ssize_t) sizeof(struct button_event))

static volatile sig_atomic_t gotUsr1;

static void out(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: probe read | hold SIZE... | efault | eintr | restart | nonblock | poll | "
            "sigio [-s] [-c|-o] | reopen N | many N | hammer | burst N US\n");
    exit(2);
}

static unsigned long long now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static const char *errname(int err)
{
    switch (err) {
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case EINTR: return "EINTR";
    case ENODEV: return "ENODEV";
    case EIO: return "EIO";
    default: return strerror(err);
    }
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

/* One read(2) of len bytes: "read N" and its records, or "read -1 ERRNO". */
static ssize_t read_once(int fd, size_t len)
{
    struct button_event ev[BATCH + 1];
    ssize_t n;

    if (len > sizeof(ev))
        len = sizeof(ev);
    n = read(fd, ev, len);
    if (n == -1) {
        out("read -1 %s\n", errname(errno));
        return -1;
    }
    out("read %zd\n", n);
    print_recs(ev, n / REC);
    return n;
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
                out("read-error %s\n", errname(errno));
            break;
        }
        if (n == 0) {
            out("read-zero\n");
            break;
        }
        if (n % REC != 0)
            out("partial %zd\n", n);
        print_recs(ev, n / REC);
        total += n / REC;
        if (last)
            *last = ev[n / REC - 1].seq;
        if (total > 1000000)
            break;
    }
    fcntl(fd, F_SETFL, fl);
    out("drained %ld\n", total);
    return total;
}

static void onUsr1(int sig)
{
    (void) sig;
    gotUsr1 = 1;
}

/* SIGUSR1's handler for `restart`: it says that it ran, with write(2). */
static void onUsr1Say(int sig)
{
    static const char line[] = "handler\n";
    ssize_t n;

    (void) sig;
    gotUsr1 = 1;
    n = write(STDOUT_FILENO, line, sizeof(line) - 1);
    (void) n;
}

/* Catch SIGUSR1 without SA_RESTART, so that it interrupts a blocking call. */
static void catch_usr1(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = onUsr1;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) == -1) {
        out("sigaction-error %s\n", strerror(errno));
        exit(2);
    }
}

/* Block SIGUSR1 and wait for it (at most 20 s). */
static int wait_usr1(void)
{
    sigset_t set;
    siginfo_t si;
    struct timespec ts = { 20, 0 };

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    if (sigtimedwait(&set, &si, &ts) == -1) {
        out("timeout\n");
        return -1;
    }
    return 0;
}

static void block_usr1(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
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
    if (sig == SIGIO)
        return "SIGIO";
    if (sig == SIGRTMIN)
        return "SIGRTMIN";
    if (sig == SIGUSR1)
        return "SIGUSR1";
    return "other";
}

static int mode_sigio(int argc, char *argv[])
{
    int setsig = 0, closeafter = 0, clearafter = 0, fd, fl;
    sigset_t set;
    siginfo_t si;
    struct timespec ts = { 20, 0 };

    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-s"))
            setsig = 1;
        else if (!strcmp(argv[i], "-c"))
            closeafter = 1;
        else if (!strcmp(argv[i], "-o"))
            clearafter = 1;
        else
            usage();
    }
    sigemptyset(&set);
    sigaddset(&set, SIGIO);
    sigaddset(&set, SIGRTMIN);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigdelset(&set, SIGUSR1);

    fd = open_dev(O_RDONLY | O_NONBLOCK);
    if (fcntl(fd, F_SETOWN, getpid()) == -1) {
        out("setown-error %s\n", strerror(errno));
        return 2;
    }
    if (setsig && fcntl(fd, F_SETSIG, SIGRTMIN) == -1) {
        out("setsig-error %s\n", strerror(errno));
        return 2;
    }
    fl = fcntl(fd, F_GETFL);
    if (fcntl(fd, F_SETFL, fl | O_ASYNC) == -1) {
        out("setfl-error %s\n", strerror(errno));
        return 2;
    }
    out("registered fd %d fasync %d\n", fd, (fcntl(fd, F_GETFL) & O_ASYNC) != 0);

    if (sigwaitinfo(&set, &si) == -1) {
        out("wait-error %s\n", strerror(errno));
        return 2;
    }
    out("got %s code %d fd %d myfd %d band %#lx\n", signame(si.si_signo), si.si_code,
        si.si_signo == SIGRTMIN ? si.si_fd : -1, fd, si.si_signo == SIGRTMIN ? (long) si.si_band : 0L);
    drain(fd, NULL);
    if (!closeafter && !clearafter) {
        close(fd);
        out("done\n");
        return 0;
    }
    if (closeafter) {
        close(fd);
        out("closed\n");
    } else {
        fl = fcntl(fd, F_GETFL);
        if (fcntl(fd, F_SETFL, fl & ~O_ASYNC) == -1) {
            out("setfl-error %s\n", strerror(errno));
            return 2;
        }
        out("cleared\n");
    }
    sigaddset(&set, SIGUSR1);
    if (sigtimedwait(&set, &si, &ts) == -1) {
        out("after timeout\n");
        return 1;
    }
    if (si.si_signo == SIGUSR1) {
        out("after nothing\n");
        return 0;
    }
    out("after got %s\n", signame(si.si_signo));
    return 1;
}

static int mode_hammer(void)
{
    struct button_event ev;
    unsigned last = 0;
    long n = 0, bad = 0;
    int first = 1;
    int fd = open_dev(O_RDONLY);

    catch_usr1();
    out("open\n");
    while (!gotUsr1) {
        ssize_t r = read(fd, &ev, sizeof(ev));

        if (r == -1) {
            if (errno == EINTR)
                continue;
            out("read-error %s\n", errname(errno));
            return 1;
        }
        if (r != REC) {
            out("partial %zd\n", r);
            return 1;
        }
        if (!first && ev.seq <= last)
            bad++;
        first = 0;
        last = ev.seq;
        n++;
    }
    out("hammer %ld records, %ld out of order, last %u\n", n, bad, last);
    return 0;
}

int main(int argc, char *argv[])
{
    const char *mode = argc > 1 ? argv[1] : "";
    int fd;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(mode, "read")) {
        fd = open_dev(O_RDONLY);
        out("open\n");
        read_once(fd, 4 * REC);
        out("now %llu\n", now_ns());
        return 0;
    }
    if (!strcmp(mode, "hold") && argc >= 2) {
        block_usr1();
        fd = open_dev(O_RDONLY | O_NONBLOCK);
        out("open\n");
        if (wait_usr1() == -1)
            return 1;
        for (int i = 2; i < argc; i++)
            read_once(fd, strtoul(argv[i], NULL, 10));
        drain(fd, NULL);
        return 0;
    }
    if (!strcmp(mode, "steps")) {
        /* Each step waits for a SIGUSR1, so the grader can look between them. */
        block_usr1();
        fd = open_dev(O_RDONLY | O_NONBLOCK);
        out("open\n");
        if (wait_usr1() == -1)
            return 1;
        drain(fd, NULL);
        if (wait_usr1() == -1)
            return 1;
        close(fd);
        out("closed\n");
        return wait_usr1() == -1;
    }
    if (!strcmp(mode, "efault")) {
        void *bad = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (bad == MAP_FAILED) {
            out("mmap-error %s\n", strerror(errno));
            return 2;
        }
        block_usr1();
        fd = open_dev(O_RDONLY | O_NONBLOCK);
        out("open\n");
        if (wait_usr1() == -1)
            return 1;
        if (read(fd, bad, 4 * REC) == -1)
            out("read -1 %s\n", errname(errno));
        else
            out("read succeeded\n");
        drain(fd, NULL);
        return 0;
    }
    if (!strcmp(mode, "eintr")) {
        catch_usr1();
        fd = open_dev(O_RDONLY);
        out("open\n");
        read_once(fd, 4 * REC);
        out("handler %s\n", gotUsr1 ? "ran" : "did-not-run");
        return 0;
    }
    if (!strcmp(mode, "restart")) {
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = onUsr1Say;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGUSR1, &sa, NULL) == -1) {
            out("sigaction-error %s\n", strerror(errno));
            return 2;
        }
        fd = open_dev(O_RDONLY);
        out("open\n");
        read_once(fd, 4 * REC);
        return 0;
    }
    if (!strcmp(mode, "nonblock")) {
        fd = open_dev(O_RDONLY | O_NONBLOCK);
        read_once(fd, 4 * REC);
        return 0;
    }
    if (!strcmp(mode, "poll")) {
        struct pollfd p;
        int rc;

        fd = open_dev(O_RDONLY);
        p.fd = fd;
        p.events = POLLIN | POLLRDNORM;
        rc = poll(&p, 1, 0);
        out("before %d %#x\n", rc, rc > 0 ? p.revents : 0);
        out("open\n");
        rc = poll(&p, 1, -1);
        out("after %d %#x\n", rc, rc > 0 ? p.revents : 0);
        if (rc > 0 && (p.revents & POLLIN)) {
            drain(fd, NULL);
            rc = poll(&p, 1, 0);
            out("after-drain %d %#x\n", rc, rc > 0 ? p.revents : 0);
        }
        return 0;
    }
    if (!strcmp(mode, "sigio"))
        return mode_sigio(argc, argv);
    if (!strcmp(mode, "reopen") && argc == 3) {
        long n = strtol(argv[2], NULL, 10);

        for (long i = 0; i < n; i++)
            close(open_dev(O_RDONLY));
        out("reopened %ld\n", n);
        return 0;
    }
    if (!strcmp(mode, "many") && argc == 3) {
        long n = strtol(argv[2], NULL, 10);
        int *fds = calloc(n > 0 ? n : 1, sizeof(int));

        block_usr1();
        for (long i = 0; i < n; i++)
            fds[i] = open_dev(O_RDONLY);
        out("opened %ld\n", n);
        if (wait_usr1() == -1)
            return 1;
        for (long i = 0; i < n; i++)
            close(fds[i]);
        out("closed %ld\n", n);
        return 0;
    }
    if (!strcmp(mode, "hammer"))
        return mode_hammer();
    if (!strcmp(mode, "burst") && argc == 4) {
        char *click[] = { "/lab/button", "click", NULL };
        char *burst[] = { "/lab/button", "burst", argv[2], argv[3], NULL };
        unsigned last = 0;
        int rc;

        fd = open_dev(O_RDONLY | O_NONBLOCK);
        if ((rc = run(click)) != 0) {
            out("button-failed %d\n", rc);
            return 2;
        }
        drain(fd, &last);
        out("before %u\n", last);
        if ((rc = run(burst)) != 0) {
            out("button-failed %d\n", rc);
            return 2;
        }
        out("burst-done\n");
        drain(fd, NULL);
        return 0;
    }
    usage();
}
