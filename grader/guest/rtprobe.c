/* rtprobe.c

   The grader's view of lab 5's sources: several devices watched with
   F_SETSIG SIGRTMIN, a reader or a poller waiting on one of them (an
   unplug must wake it), and the writer of a FIFO of notes.  It runs as
   root in the VM, out of the student programs' reach, and prints what it
   saw, one line per fact, so that a test can tell the driver's part from
   the student's program.

   rtprobe watch PATH...   open each PATH (O_RDONLY | O_NONBLOCK), F_SETOWN,
                           F_SETSIG SIGRTMIN, O_ASYNC; print "fd F PATH"
                           for each and "ready".  Then, every signal
                           blocked and taken with sigwaitinfo():
                             SIGRTMIN  "got fd F code C band 0xB"
                             SIGIO     "got SIGIO" (the queue was full)
                             SIGUSR1   for each file still open, read it
                                       until it stops: "read PATH N: S P,
                                       S P..." (N records, seq and
                                       pressed) or "read PATH -1 ERRNO"
                                       (after records: "read PATH N: ...
                                       then -1 ERRNO"); poll(2) it with no
                                       wait before ("peek PATH 0xREVENTS")
                                       and after ("poll PATH 0xREVENTS");
                                       then "checked"
                             SIGUSR2   close every file: "closed"
                             SIGTERM   exit
   rtprobe read PATH       print "waiting", then one blocking read(2):
                           "read N" or "read -1 ERRNO"
   rtprobe poll PATH       print "waiting", then poll(2) for POLLIN with no
                           timeout: "poll RC 0xREVENTS"
   rtprobe count PATH      the correct watcher of lab 5, counting instead of
                           printing (tools/plots/lab5-queue.py): F_SETSIG
                           SIGRTMIN, a SA_SIGINFO handler that only records,
                           main reads the file until EAGAIN at each signal,
                           and at SIGIO (the queue was full) flushes the
                           queued SIGRTMIN and reads; "ready", then at SIGUSR1
                           (10: it overtakes the queued SIGRTMIN) it goes on
                           until no SIGRTMIN or SIGIO is pending, so that
                           every queued signal is handled, reads what is
                           left and prints
                             signals S overflows O flushed F records R lost L
                             events E
                           (S signals handled, O resyncs, F signals flushed,
                           R records read, L seq numbers the ring overwrote,
                           E events the driver recorded: the last seq read
                           minus the first, plus one)
   rtprobe notes FIFO      open FIFO for writing (O_NONBLOCK: a FIFO with
                           no reader fails with ENXIO, "no-reader"; a
                           symbolic link or anything but a FIFO is refused,
                           "open-error PATH is a symbolic link, ..."), print
                           "open"; each SIGUSR1 writes the next line "note
                           K" with one write(2) (reopening the FIFO if it
                           was closed) and prints "wrote K"; SIGUSR2 closes
                           it ("closed"): its reader sees the end of file;
                           SIGTERM ends it

   rtprobe tkill PID SIG   send SIG to the thread PID of process PID with
                           tgkill(2), as raise() in that process would (lab 6:
                           si_code SI_TKILL); print "sent" or "tkill-error E"

   Usage: rtprobe watch PATH... | read PATH | poll PATH | count PATH | notes FIFO
          | tkill PID SIG
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
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct button_event {
    uint64_t time_ns;
    uint32_t seq;
    uint32_t pressed;
};

#define MAX_FILES 8
#define REC ((ssize_t) sizeof(struct button_event))

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
    fprintf(stderr, "usage: rtprobe watch PATH... | read PATH | poll PATH | count PATH | notes FIFO | tkill PID SIG\n");
    exit(2);
}

static const char *errname(int err)
{
    switch (err) {
    case EAGAIN: return "EAGAIN";
    case ENODEV: return "ENODEV";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    default: return strerror(err);
    }
}

/* Block these signals (and take them with sigwaitinfo()). */
static sigset_t block(int first, ...)
{
    sigset_t set;
    va_list ap;

    sigemptyset(&set);
    va_start(ap, first);
    for (int sig = first; sig != 0; sig = va_arg(ap, int))
        sigaddset(&set, sig);
    va_end(ap);
    sigprocmask(SIG_BLOCK, &set, NULL);
    return set;
}

/* Read a file until it stops; one line. */
static void read_all(int fd, const char *path)
{
    struct button_event ev[16];
    char line[4096];
    size_t len = 0;
    long total = 0;
    ssize_t n;

    line[0] = '\0';
    while ((n = read(fd, ev, sizeof(ev))) > 0 && total < 200) {
        for (ssize_t i = 0; i < n / REC && len < sizeof(line) - 32; i++)
            len += snprintf(line + len, sizeof(line) - len, "%s %u %u", total + i ? "," : "",
                            ev[i].seq, ev[i].pressed);
        total += n / REC;
    }
    /* An error after records: both (the records are not hidden by it). */
    if (n == -1 && errno != EAGAIN && total == 0)
        out("read %s -1 %s\n", path, errname(errno));
    else if (n == -1 && errno != EAGAIN)
        out("read %s %ld:%s then -1 %s\n", path, total, line, errname(errno));
    else
        out("read %s %ld:%s\n", path, total, line);
}

static int mode_watch(int argc, char *argv[])
{
    int fds[MAX_FILES], n = argc - 2;
    sigset_t set;
    siginfo_t si;

    if (n < 1 || n > MAX_FILES)
        usage();
    set = block(SIGRTMIN, SIGIO, SIGUSR1, SIGUSR2, SIGTERM, 0);
    for (int i = 0; i < n; i++) {
        int fl;

        fds[i] = open(argv[i + 2], O_RDONLY | O_NONBLOCK);
        if (fds[i] == -1) {
            out("open-error %s %s\n", argv[i + 2], strerror(errno));
            return 2;
        }
        fl = fcntl(fds[i], F_GETFL);
        if (fcntl(fds[i], F_SETOWN, getpid()) == -1 || fcntl(fds[i], F_SETSIG, SIGRTMIN) == -1 ||
            fcntl(fds[i], F_SETFL, fl | O_ASYNC) == -1) {
            out("fcntl-error %s %s\n", argv[i + 2], strerror(errno));
            return 2;
        }
        out("fd %d %s\n", fds[i], argv[i + 2]);
    }
    out("ready\n");
    for (;;) {
        int sig = sigwaitinfo(&set, &si);

        if (sig == -1)
            continue;
        if (sig == SIGRTMIN) {
            out("got fd %d code %d band %#lx\n", si.si_fd, si.si_code, (long) si.si_band);
        } else if (sig == SIGIO) {
            out("got SIGIO\n");
        } else if (sig == SIGUSR1) {
            for (int i = 0; i < n; i++) {
                struct pollfd p = { .fd = fds[i], .events = POLLIN };

                if (fds[i] == -1)
                    continue;
                if (poll(&p, 1, 0) == -1)   /* before reading: what is waiting */
                    out("peek %s -1 %s\n", argv[i + 2], strerror(errno));
                else
                    out("peek %s %#x\n", argv[i + 2], p.revents);
                p.revents = 0;
                read_all(fds[i], argv[i + 2]);
                if (poll(&p, 1, 0) == -1)
                    out("poll %s -1 %s\n", argv[i + 2], strerror(errno));
                else
                    out("poll %s %#x\n", argv[i + 2], p.revents);
            }
            out("checked\n");
        } else if (sig == SIGUSR2) {
            for (int i = 0; i < n; i++) {
                if (fds[i] != -1)
                    close(fds[i]);
                fds[i] = -1;
            }
            out("closed\n");
        } else {
            return 0;
        }
    }
}

/* --- count: the correct lab 5 watcher, counting ----------------------------------------- */

static volatile sig_atomic_t pendingRt, pendingIo, gotUsr1;
static long cSignals, cOverflows, cFlushed, cRecords, cLost;
static uint32_t firstSeq, lastSeq;

static void on_count(int sig, siginfo_t *si, void *uc)
{
    (void) si;
    (void) uc;
    if (sig == SIGIO)
        pendingIo = 1;
    else if (sig == SIGUSR1)
        gotUsr1 = 1;
    else
        pendingRt++;
}

static void count_drain(int fd)
{
    struct button_event ev[16];
    ssize_t n;

    while ((n = read(fd, ev, sizeof(ev))) > 0)
        for (ssize_t i = 0; i < n / REC; i++) {
            if (lastSeq != 0 && ev[i].seq != lastSeq + 1)
                cLost += ev[i].seq - lastSeq - 1;
            if (firstSeq == 0)
                firstSeq = ev[i].seq;
            lastSeq = ev[i].seq;
            cRecords++;
        }
}

static int mode_count(const char *path)
{
    sigset_t all, orig, rt;
    struct sigaction sa;
    struct timespec zero = { 0, 0 };
    int fd, fl;

    sigemptyset(&all);
    sigaddset(&all, SIGRTMIN);
    sigaddset(&all, SIGIO);
    sigaddset(&all, SIGUSR1);
    sigprocmask(SIG_BLOCK, &all, &orig);
    memset(&sa, 0, sizeof(sa));
    sa.sa_mask = all;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sa.sa_sigaction = on_count;
    sigaction(SIGRTMIN, &sa, NULL);
    sigaction(SIGIO, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd == -1) {
        out("open-error %s\n", strerror(errno));
        return 2;
    }
    fl = fcntl(fd, F_GETFL);
    if (fcntl(fd, F_SETOWN, getpid()) == -1 || fcntl(fd, F_SETSIG, SIGRTMIN) == -1 ||
        fcntl(fd, F_SETFL, fl | O_ASYNC) == -1) {
        out("fcntl-error %s\n", strerror(errno));
        return 2;
    }
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    out("ready\n");
    for (;;) {
        sigset_t left;

        /* Stop only once the queue is drained: SIGUSR1 comes before it. */
        sigpending(&left);
        if (gotUsr1 && !sigismember(&left, SIGRTMIN) && !sigismember(&left, SIGIO))
            break;
        sigsuspend(&orig);
        for (; pendingRt > 0; pendingRt--) {
            cSignals++;
            count_drain(fd);
        }
        if (pendingIo) {
            pendingIo = 0;
            cOverflows++;
            while (sigtimedwait(&rt, NULL, &zero) != -1)
                cFlushed++;
            count_drain(fd);
        }
    }
    count_drain(fd);
    out("signals %ld overflows %ld flushed %ld records %ld lost %ld events %ld\n", cSignals, cOverflows,
        cFlushed, cRecords, cLost, cRecords ? (long) (lastSeq - firstSeq) + 1 : 0L);
    return 0;
}

/* Open the notes FIFO for writing, as root, in a folder the student's program
   owns: no symbolic link is followed (O_NOFOLLOW, checked first on an O_PATH
   descriptor, which opens nothing), and only a FIFO is opened (a hard link to
   a file of root's would otherwise be written).  -1 with the reason printed. */
static int open_notes(const char *path)
{
    struct stat st;
    char proc[64];
    int fd, pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);

    if (pfd == -1) {
        out("open-error %s\n", strerror(errno));
        return -1;
    }
    if (fstat(pfd, &st) == -1) {
        out("open-error %s\n", strerror(errno));
        close(pfd);
        return -1;
    }
    if (S_ISLNK(st.st_mode) || !S_ISFIFO(st.st_mode)) {
        out("open-error %s is %s, not a FIFO: refused\n", path,
            S_ISLNK(st.st_mode) ? "a symbolic link" : S_ISREG(st.st_mode) ? "a regular file" : "not a FIFO");
        close(pfd);
        return -1;
    }
    /* The very FIFO checked, reopened for writing through its descriptor. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
    fd = open(proc, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd == -1)
        out(errno == ENXIO ? "no-reader\n" : "open-error %s\n", strerror(errno));
    close(pfd);
    return fd;
}

static int mode_notes(const char *path)
{
    sigset_t set = block(SIGUSR1, SIGUSR2, SIGTERM, 0);
    int fd = open_notes(path), k = 0;
    siginfo_t si;

    if (fd == -1)
        return 2;
    out("open\n");
    for (;;) {
        int sig = sigwaitinfo(&set, &si);
        char line[32];
        int len;

        if (sig == SIGUSR1) {
            if (fd == -1 && (fd = open_notes(path)) == -1)
                continue;
            len = snprintf(line, sizeof(line), "note %d\n", ++k);
            if (write(fd, line, len) != len)
                out("write-error %s\n", strerror(errno));
            else
                out("wrote %d\n", k);
        } else if (sig == SIGUSR2) {
            if (fd != -1)
                close(fd);
            fd = -1;
            out("closed\n");
        } else if (sig == SIGTERM) {
            return 0;
        }
    }
}

int main(int argc, char *argv[])
{
    const char *mode = argc > 1 ? argv[1] : "";

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(mode, "watch"))
        return mode_watch(argc, argv);
    if (!strcmp(mode, "count") && argc == 3)
        return mode_count(argv[2]);
    if (!strcmp(mode, "notes") && argc == 3)
        return mode_notes(argv[2]);
    if (!strcmp(mode, "tkill") && argc == 4) {
        pid_t pid = atoi(argv[2]);

        if (syscall(SYS_tgkill, pid, pid, atoi(argv[3])) == -1) {
            out("tkill-error %s\n", strerror(errno));
            return 1;
        }
        out("sent\n");
        return 0;
    }
    if ((!strcmp(mode, "read") || !strcmp(mode, "poll")) && argc == 3) {
        int fd = open(argv[2], O_RDONLY);

        if (fd == -1) {
            out("open-error %s\n", strerror(errno));
            return 2;
        }
        out("waiting\n");
        if (!strcmp(mode, "read")) {
            struct button_event ev[4];
            ssize_t n = read(fd, ev, sizeof(ev));

            if (n == -1)
                out("read -1 %s\n", errname(errno));
            else
                out("read %zd\n", n);
        } else {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            int rc = poll(&p, 1, -1);

            out("poll %d %#x\n", rc, rc > 0 ? p.revents : 0);
        }
        return 0;
    }
    usage();
}
