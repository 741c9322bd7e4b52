/* sigtrace.c - the kernel's own record of the signals sent to processes.

   The kernel traces every signal it generates (the tracepoint
   signal:signal_generate, with the result: made pending, ignored, merged
   into one already pending, queue full, queued without its info) and every
   signal a process takes (a kretprobe on dequeue_signal(), the one function
   through which a handler, a default action, sigwaitinfo() and signalfd all
   take a pending signal; signal:signal_deliver says which action ran).
   This program switches that tracing on (tracefs, /sys/kernel/tracing),
   counts it in the kernel with hist triggers (exact, however long the
   burst), keeps a timeline in the trace buffer, and prints, per process:

       pid 57 (burstwatch):
         kernel: SIGIO generated 200, merged 191, taken 9
         kernel: SIGTERM generated 1, merged 0, taken 1

   (queue full N, ignored N, info lost N are added where not 0.)  A
   process is followed into the children and threads it makes while the
   recording runs (sched:sched_process_fork, counted the same way).

   Usage:
       sigtrace [-t] [-n LINES] -- COMMAND [ARG...]
                                   run COMMAND, then show what was recorded
                                   for it (and its children); the signals a
                                   job gets (kill %1, ^C) are for COMMAND:
                                   sigtrace ignores them and stays
       sigtrace start              start a new recording (of every process)
       sigtrace stop               stop it (show still works)
       sigtrace show [-t] [-n LINES] [-p PID]...
                                   the counts per process (with -p: PID and
                                   its descendants only); -t adds the
                                   timeline, -n cuts it to about LINES lines

   Needs root (tracefs).  Counts come from the kernel's hist tables and are
   complete; the timeline comes from the trace buffer and says so when the
   buffer filled up.  Signals to a process that had not been started when
   the recording began are counted like any other: the record is by pid.

   Build: gcc -static -O2 -Wall -Wextra -Werror -o sigtrace sigtrace.c
*/
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TRACEFS "/sys/kernel/tracing"
#define STATE_DIR "/run/sigtrace"
#define START_FILE STATE_DIR "/start"   /* time and counts at `start` */
#define STOP_FILE STATE_DIR "/stop"     /* ... and at `stop` */
#define BUFFER_KB "2048"                /* trace buffer per CPU */
#define KEEP_EVENTS 4000                /* more at `start`: the buffer is emptied */

#define GEN TRACEFS "/events/signal/signal_generate"
#define DELIVER TRACEFS "/events/signal/signal_deliver"
#define TAKE TRACEFS "/events/sigtrace/take"
#define FORK TRACEFS "/events/sched/sched_process_fork"

#define KPROBE "r:sigtrace/take dequeue_signal ret=$retval:s32"

#define NSIG_MAX 65
#define NRESULT 5       /* 0 pending, 1 ignored, 2 merged, 3 queue full, 4 info lost */

static void __attribute__((noreturn, format(printf, 1, 2)))
fatal(const char *fmt, ...)
{
    va_list ap;
    int err = errno;

    fflush(stdout);
    fprintf(stderr, "sigtrace: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (fmt[strlen(fmt) - 1] == ':')      /* "...:" ends with the errno's text */
        fprintf(stderr, " %s", strerror(err));
    fprintf(stderr, "\n");
    exit(EXIT_FAILURE);
}

static void __attribute__((noreturn))
usage(FILE *fp, int status)
{
    fprintf(fp,
"Usage: sigtrace [-t] [-n LINES] -- COMMAND [ARG...]\n"
"       sigtrace start | stop\n"
"       sigtrace show [-t] [-n LINES] [-p PID]...\n"
"\n"
"The kernel's own record of signals, per process: how many it generated,\n"
"how many merged into one already pending (a standard signal is one bit),\n"
"and how many the process took (handler, default action, sigwaitinfo(),\n"
"signalfd).  Queue full, ignored and info lost are shown when not 0.\n"
"\n"
"  -- COMMAND   record while COMMAND runs, then show it and its children\n"
"  start        start a new recording (every process)\n"
"  stop         stop recording\n"
"  show         print the counts of the recording (with -p: of PID and the\n"
"               processes it started; -p may be repeated)\n"
"  -t           also print the timeline: time, event, signal, pid, result\n"
"  -n LINES     cut the timeline to about LINES lines\n");
    exit(status);
}

static void *
xrealloc(void *p, size_t size)
{
    p = realloc(p, size);
    if (p == NULL)
        fatal("out of memory");
    return p;
}

/* --- tracefs files ----------------------------------------------------- */

/* Write text to a tracefs file; return 0 or the errno. */
static int
put(const char *path, const char *text, int append)
{
    int fd = open(path, O_WRONLY | (append ? O_APPEND : O_TRUNC));
    ssize_t n;
    int err = 0;

    if (fd == -1)
        return errno;
    n = write(fd, text, strlen(text));
    if (n == -1)
        err = errno;
    close(fd);
    return err;
}

static void
mustPut(const char *path, const char *text, int append)
{
    int err = put(path, text, append);

    if (err != 0) {
        errno = err;
        fatal("writing '%s' to %s:", text, path);
    }
}

static int
exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void
needTracefs(void)
{
    if (geteuid() != 0)
        fatal("needs root: the record is kept in tracefs (%s)", TRACEFS);
    if (!exists(TRACEFS "/trace")) {
        mkdir(TRACEFS, 0755);
        if (mount("tracefs", TRACEFS, "tracefs", 0, NULL) == -1)
            fatal("cannot mount tracefs on %s:", TRACEFS);
    }
}

/* --- the counting tables: hist triggers, read, never reset per recording --- */

/* A recording does not reset the tables (that waits for RCU grace periods,
   slow in a VM without KVM): `start` saves their counts, and `show`
   subtracts them.  They are set up anew only when one is half full. */
enum table { T_GEN, T_COMM, T_TAKE, T_FORK, NTABLES };

static const struct {
    const char *event;
    const char *trigger;
    int size;
} tables[NTABLES] = {
    [T_GEN] = { GEN, "hist:keys=pid,sig,result:size=4096", 4096 },
    [T_COMM] = { GEN, "hist:keys=pid,comm:size=2048", 2048 },
    [T_TAKE] = { TAKE, "hist:keys=common_pid,ret:size=4096 if ret > 0", 4096 },
    [T_FORK] = { FORK, "hist:keys=parent_pid,child_pid:size=8192", 8192 },
};

struct entry {
    int table;
    long hits;
    char key[112];              /* "pid: 57, sig: 29, result: 2" */
};

struct counts {
    long long ns;               /* CLOCK_MONOTONIC of the snapshot */
    struct entry *e;
    int n, cap;
    long entries[NTABLES];      /* keys in each table */
    long dropped[NTABLES];      /* events lost because a table was full */
    long missed;                /* takes the kretprobe missed */
    long overrun;               /* events the ring buffer overwrote */
};

static void
addEntry(struct counts *c, int table, long hits, const char *key)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->e = xrealloc(c->e, c->cap * sizeof(*c->e));
    }
    c->e[c->n].table = table;
    c->e[c->n].hits = hits;
    snprintf(c->e[c->n].key, sizeof(c->e[0].key), "%s", key);
    c->n++;
}

static long
takesMissed(void)
{
    FILE *f = fopen(TRACEFS "/kprobe_profile", "r");
    char line[256], name[128];
    long hits, missed, total = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "%127s %ld %ld", name, &hits, &missed) == 3 && strcmp(name, "take") == 0)
            total += missed;
    fclose(f);
    return total;
}

static long long parseTs(const char *line, const char *at);

/* Over all CPUs: the sum of the ring buffer's "overrun" counts, the time
   of the oldest event it still holds (ns), and how many it holds. */
static long bufferEntries;

static void
bufferStats(long *overrun, long long *oldest)
{
    char path[128], line[128];

    *overrun = 0;
    *oldest = 0;
    bufferEntries = 0;
    for (int cpu = 0; cpu < 1024; cpu++) {
        FILE *f;

        snprintf(path, sizeof(path), TRACEFS "/per_cpu/cpu%d/stats", cpu);
        f = fopen(path, "r");
        if (f == NULL)
            break;
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "overrun: ", 9) == 0)
                *overrun += strtol(line + 9, NULL, 10);
            if (strncmp(line, "entries: ", 9) == 0)
                bufferEntries += strtol(line + 9, NULL, 10);
            if (strncmp(line, "oldest event ts:", 16) == 0) {
                long long ns = parseTs(line, line + strlen(line) - 1);

                if (ns > *oldest)
                    *oldest = ns;
            }
        }
        fclose(f);
    }
}

static long long
monoNow(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* "hist:keys=pid,sig,result:size=4096" -> "hist:keys=pid,sig,result" */
static int
keysLen(const char *trigger)
{
    return (int) (strstr(trigger, ":size") - trigger);
}

/* Read the live tables; return -1 if one of them is not set up. */
static int
readLive(struct counts *c)
{
    char path[256], line[512], key[128];

    long long oldest;

    memset(c, 0, sizeof(*c));
    c->ns = monoNow();
    c->missed = takesMissed();
    bufferStats(&c->overrun, &oldest);
    for (int t = 0; t < NTABLES; t++) {
        int mine = 0, found = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/hist", tables[t].event);
        f = fopen(path, "r");
        if (f == NULL)
            return -1;
        while (fgets(line, sizeof(line), f) != NULL) {
            const char *h;

            if (strncmp(line, "# trigger info: ", 16) == 0) {
                mine = strncmp(line + 16, tables[t].trigger, keysLen(tables[t].trigger)) == 0 &&
                       line[16 + keysLen(tables[t].trigger)] == ':';
                found |= mine;
            }
            if (!mine)
                continue;
            if (strncmp(line, "    Entries: ", 13) == 0)
                c->entries[t] = strtol(line + 13, NULL, 10);
            if (strncmp(line, "    Dropped: ", 13) == 0)
                c->dropped[t] = strtol(line + 13, NULL, 10);
            h = strstr(line, "} hitcount:");
            if (line[0] == '{' && h != NULL) {
                /* the key, with its padding squeezed out */
                int k = 0;

                for (const char *p = line + 1; p < h && k < (int) sizeof(key) - 1; p++)
                    if (!(*p == ' ' && (k == 0 || key[k - 1] == ' ' || p[1] == ',' || p + 1 == h)))
                        key[k++] = *p;
                while (k > 0 && key[k - 1] == ' ')
                    k--;
                key[k] = '\0';
                addEntry(c, t, strtol(h + 11, NULL, 10), key);
            }
        }
        fclose(f);
        if (!found)
            return -1;
    }
    return 0;
}

static void
saveCounts(const char *path, const struct counts *c)
{
    char tmp[128];
    FILE *f;

    mkdir(STATE_DIR, 0755);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL)
        fatal("%s:", tmp);
    fprintf(f, "time %lld\nmissed %ld\noverrun %ld\n", c->ns, c->missed, c->overrun);
    for (int t = 0; t < NTABLES; t++)
        fprintf(f, "table %d %ld %ld\n", t, c->entries[t], c->dropped[t]);
    for (int i = 0; i < c->n; i++)
        fprintf(f, "entry %d %ld %s\n", c->e[i].table, c->e[i].hits, c->e[i].key);
    if (fclose(f) == EOF || rename(tmp, path) == -1)
        fatal("%s:", path);
}

static int
loadCounts(const char *path, struct counts *c)
{
    char line[256];
    FILE *f = fopen(path, "r");

    memset(c, 0, sizeof(*c));
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        int t, off = 0;
        long a, b;

        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "time %lld", &c->ns) == 1 || sscanf(line, "missed %ld", &c->missed) == 1 ||
            sscanf(line, "overrun %ld", &c->overrun) == 1)
            continue;
        if (sscanf(line, "table %d %ld %ld", &t, &a, &b) == 3 && t >= 0 && t < NTABLES) {
            c->entries[t] = a;
            c->dropped[t] = b;
        } else if (sscanf(line, "entry %d %ld %n", &t, &a, &off) == 2 && off > 0) {
            addEntry(c, t, a, line + off);
        }
    }
    fclose(f);
    return 0;
}

/* Set everything up from scratch: the kprobe, the tables, the buffer. */
static void
setUp(void)
{
    char cur[64] = "", text[160];
    FILE *f;

    put(TRACEFS "/tracing_on", "0", 0);
    put(GEN "/enable", "0", 0);
    put(DELIVER "/enable", "0", 0);
    put(TAKE "/enable", "0", 0);
    for (int t = 0; t < NTABLES; t++) {
        snprintf(text, sizeof(text), "!%s", tables[t].trigger);
        snprintf(cur, sizeof(cur), "%s/trigger", tables[t].event);
        put(cur, text, 1);      /* ENOENT when it was not there: fine */
    }
    if (!exists(TAKE))
        mustPut(TRACEFS "/kprobe_events", KPROBE, 1);
    mustPut(TRACEFS "/trace_clock", "mono", 0);
    mustPut(TRACEFS "/options/overwrite", "1", 0);  /* a ring: keep the newest */
    f = fopen(TRACEFS "/buffer_size_kb", "r");
    cur[0] = '\0';
    if (f != NULL) {
        if (fgets(cur, sizeof(cur), f) == NULL)
            cur[0] = '\0';
        fclose(f);
    }
    if (strncmp(cur, BUFFER_KB "\n", strlen(BUFFER_KB) + 1) != 0)
        mustPut(TRACEFS "/buffer_size_kb", BUFFER_KB, 0);
    mustPut(TRACEFS "/trace", "", 0);                /* empty the buffer */
    for (int t = 0; t < NTABLES; t++) {
        snprintf(cur, sizeof(cur), "%s/trigger", tables[t].event);
        mustPut(cur, tables[t].trigger, 1);
    }
    mustPut(GEN "/enable", "1", 0);
    mustPut(DELIVER "/enable", "1", 0);
    mustPut(TAKE "/enable", "1", 0);
    mustPut(TRACEFS "/tracing_on", "1", 0);
}

static void
cmdStart(void)
{
    struct counts c;
    int full = 0;

    needTracefs();
    if (readLive(&c) == 0)
        for (int t = 0; t < NTABLES; t++)
            full |= c.entries[t] > tables[t].size / 2;
    else
        full = 1;
    if (full) {
        setUp();
        if (readLive(&c) == -1)
            fatal("the tracing tables did not appear in %s", TRACEFS);
    } else if (bufferEntries > KEEP_EVENTS) {
        /* Reading the timeline formats every event the buffer holds: empty
           it (cheap, unlike resetting the tables) so `show -t` stays quick. */
        mustPut(TRACEFS "/trace", "", 0);
        if (readLive(&c) == -1)
            fatal("the recording was removed from %s", TRACEFS);
    }
    unlink(STOP_FILE);
    saveCounts(START_FILE, &c);
}

static void
cmdStop(void)
{
    struct counts c;

    needTracefs();
    if (!exists(START_FILE))
        fatal("nothing is being recorded (sigtrace start)");
    if (readLive(&c) == -1)
        fatal("the recording was removed from %s", TRACEFS);
    saveCounts(STOP_FILE, &c);
}

/* --- what was recorded --------------------------------------------------- */

struct proc {
    int pid;
    char comm[17];
    long commHits;
    long gen[NSIG_MAX][NRESULT];
    long taken[NSIG_MAX];
    int any;
};

static struct proc *procs;
static int nprocs, cprocs;

static struct { int parent, child; } *forks;
static int nforks, cforks;

static long dropped[NTABLES];           /* events a full table lost, per table */
static long missedTakes;                /* takes the kretprobe missed */
static long startOverrun;               /* the ring buffer's overrun at start */
static long long startNs, stopNs;       /* the recording's span */

static struct proc *
procFor(int pid)
{
    for (int i = 0; i < nprocs; i++)
        if (procs[i].pid == pid)
            return &procs[i];
    if (nprocs == cprocs) {
        cprocs = cprocs ? 2 * cprocs : 64;
        procs = xrealloc(procs, cprocs * sizeof(*procs));
    }
    memset(&procs[nprocs], 0, sizeof(procs[0]));
    procs[nprocs].pid = pid;
    return &procs[nprocs++];
}

/* Value of "name: value" in a key, as text. */
static int
keyField(const char *key, const char *name, char *val, size_t size)
{
    char pat[40];
    const char *p, *end;
    size_t n;

    snprintf(pat, sizeof(pat), "%s: ", name);
    for (p = strstr(key, pat); p != NULL && p != key && p[-1] != ' '; p = strstr(p + 1, pat))
        ;
    if (p == NULL)
        return -1;
    p += strlen(pat);
    end = strstr(p, ", ");
    if (end == NULL)
        end = p + strlen(p);
    n = (size_t) (end - p) < size - 1 ? (size_t) (end - p) : size - 1;
    memcpy(val, p, n);
    val[n] = '\0';
    return 0;
}

static long
keyNum(const char *key, const char *name)
{
    char val[64];

    if (keyField(key, name, val, sizeof(val)) == -1)
        return -1;
    return strtol(val, NULL, 10);
}

static void
addCounts(int table, const char *key, long hits)
{
    long pid, sig, res;
    struct proc *p;
    char comm[64];

    switch (table) {
    case T_GEN:
        pid = keyNum(key, "pid");
        sig = keyNum(key, "sig");
        res = keyNum(key, "result");
        if (pid <= 0 || sig <= 0 || sig >= NSIG_MAX || res < 0 || res >= NRESULT)
            return;
        p = procFor(pid);
        p->gen[sig][res] += hits;
        p->any = 1;
        break;
    case T_COMM:
        pid = keyNum(key, "pid");
        if (pid <= 0 || keyField(key, "comm", comm, sizeof(comm)) == -1)
            return;
        p = procFor(pid);
        if (hits > p->commHits) {
            snprintf(p->comm, sizeof(p->comm), "%.16s", comm);
            p->commHits = hits;
        }
        break;
    case T_TAKE:
        pid = keyNum(key, "common_pid");
        sig = keyNum(key, "ret");
        if (pid <= 0 || sig <= 0 || sig >= NSIG_MAX)
            return;
        p = procFor(pid);
        p->taken[sig] += hits;
        p->any = 1;
        break;
    case T_FORK:
        if (nforks == cforks) {
            cforks = cforks ? 2 * cforks : 64;
            forks = xrealloc(forks, cforks * sizeof(*forks));
        }
        forks[nforks].parent = keyNum(key, "parent_pid");
        forks[nforks].child = keyNum(key, "child_pid");
        nforks++;
        break;
    }
}

static int
byTableKey(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    return x->table != y->table ? x->table - y->table : strcmp(x->key, y->key);
}

/* The recording: the counts now (or at `stop`) less the counts at `start`. */
static void
readRecord(void)
{
    struct counts start, now;

    if (loadCounts(START_FILE, &start) == -1)
        fatal("nothing was recorded (run `sigtrace start` first)");
    if (loadCounts(STOP_FILE, &now) == -1) {
        if (readLive(&now) == -1)
            fatal("the recording was removed from %s", TRACEFS);
        stopNs = 0;
    } else {
        stopNs = now.ns;
    }
    startNs = start.ns;
    for (int t = 0; t < NTABLES; t++) {
        if (now.entries[t] < start.entries[t])
            fatal("the tables were reset since `sigtrace start`: start again");
        dropped[t] = now.dropped[t] - start.dropped[t];
    }
    missedTakes = now.missed - start.missed;
    startOverrun = start.overrun;
    qsort(start.e, start.n, sizeof(start.e[0]), byTableKey);
    for (int i = 0; i < now.n; i++) {
        struct entry *was = bsearch(&now.e[i], start.e, start.n, sizeof(start.e[0]), byTableKey);
        long before = was ? was->hits : 0;

        if (now.e[i].hits > before)
            addCounts(now.e[i].table, now.e[i].key, now.e[i].hits - before);
    }
}

/* The pids asked for and every process they forked while recording. */
static int *wanted;
static int nwanted;

static int
isWanted(int pid)
{
    if (nwanted == 0)
        return 1;
    for (int i = 0; i < nwanted; i++)
        if (wanted[i] == pid)
            return 1;
    return 0;
}

static void
addDescendants(void)
{
    int grew = 1;

    while (grew) {
        grew = 0;
        for (int i = 0; i < nforks; i++) {
            if (isWanted(forks[i].parent) && !isWanted(forks[i].child)) {
                wanted = realloc(wanted, (nwanted + 1) * sizeof(*wanted));
                if (wanted == NULL)
                    fatal("out of memory");
                wanted[nwanted++] = forks[i].child;
                grew = 1;
            }
        }
    }
}

static const char *
sigName(int sig, char *buf, size_t size)
{
    static const char *const names[32] = {
        "0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT",
        "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2",
        "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
        "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
        "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR",
        "SIGSYS",
    };

    if (sig > 0 && sig < 32)
        return names[sig];
    if (sig == SIGRTMIN)
        return "SIGRTMIN";
    if (sig > SIGRTMIN && sig <= SIGRTMAX)
        snprintf(buf, size, "SIGRTMIN+%d", sig - SIGRTMIN);
    else
        snprintf(buf, size, "signal %d", sig);
    return buf;
}

/* The comm of a live process, for processes that got no signal. */
static void
liveComm(int pid, char *buf, size_t size)
{
    char path[64];
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/comm", pid);
    buf[0] = '\0';
    f = fopen(path, "r");
    if (f == NULL)
        return;
    if (fgets(buf, size, f) != NULL)
        buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
}

static int
byPid(const void *a, const void *b)
{
    return ((const struct proc *) a)->pid - ((const struct proc *) b)->pid;
}

static void
printSummary(int roots)
{
    static const char *const extra[NRESULT] = { NULL, "ignored", NULL, "queue full", "info lost" };
    char nb[32];
    int shown = 0;

    qsort(procs, nprocs, sizeof(procs[0]), byPid);
    for (int i = 0; i < nprocs; i++) {
        struct proc *p = &procs[i];

        if (!p->any || !isWanted(p->pid))
            continue;
        if (p->comm[0] == '\0')
            liveComm(p->pid, p->comm, sizeof(p->comm));
        printf("pid %d (%s):\n", p->pid, p->comm[0] ? p->comm : "?");
        for (int sig = 1; sig < NSIG_MAX; sig++) {
            long g = 0;

            for (int r = 0; r < NRESULT; r++)
                g += p->gen[sig][r];
            if (g == 0 && p->taken[sig] == 0)
                continue;
            printf("  kernel: %s generated %ld, merged %ld, taken %ld",
                   sigName(sig, nb, sizeof(nb)), g, p->gen[sig][2], p->taken[sig]);
            /* queue full, ignored, info lost: where not 0 */
            if (p->gen[sig][3])
                printf(", %s %ld", extra[3], p->gen[sig][3]);
            if (p->gen[sig][1])
                printf(", %s %ld", extra[1], p->gen[sig][1]);
            if (p->gen[sig][4])
                printf(", %s %ld", extra[4], p->gen[sig][4]);
            printf("\n");
        }
        shown++;
    }
    /* The processes asked for by -p that got no signal at all. */
    for (int i = 0; i < roots; i++) {
        int found = 0;

        for (int j = 0; j < nprocs; j++)
            found |= procs[j].pid == wanted[i] && procs[j].any;
        if (!found) {
            char comm[32];

            liveComm(wanted[i], comm, sizeof(comm));
            printf("pid %d (%s):\n  kernel: no signal\n", wanted[i], comm[0] ? comm : "?");
            shown++;
        }
    }
    if (shown == 0)
        printf("kernel: no signal\n");
    /* What each full table lost, and what the counts above therefore miss. */
    static const char *const lost[NTABLES] = {
        [T_GEN] = "the table of signals generated was full: %ld were not counted",
        [T_COMM] = "the table of process names was full: %ld signals went to a process whose name was not kept",
        [T_TAKE] = "the table of signals taken was full: %ld were not counted",
        [T_FORK] = "the table of forks was full: the children of %ld forks are not followed",
    };
    for (int t = 0; t < NTABLES; t++) {
        if (dropped[t] > 0) {
            printf("sigtrace: warning: ");
            printf(lost[t], dropped[t]);
            printf(" (a recording has room for %d keys at least: record a shorter run)\n",
                   tables[t].size / 2);
        }
    }
}

/* --- the timeline ---------------------------------------------------------- */

enum kind { K_GEN, K_TAKE, K_DELIVER };

struct ev {
    long long ns;
    enum kind kind;
    int sig, pid, code, result;
    char how[72];               /* take: handler, default action, ... */
};

static struct ev *evs;
static int nevs, cevs;

static long long
parseTs(const char *line, const char *at)
{
    /* "...   123.456789: event: ..." : the number before ": event" */
    const char *p = at;
    long long sec = 0, frac = 0, scale = 1;

    while (p > line && p[-1] != ' ')
        p--;
    sec = strtoll(p, (char **) &p, 10);
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char) *p)) {
            frac = frac * 10 + (*p - '0');
            scale *= 10;
            p++;
        }
    }
    return sec * 1000000000LL + frac * (1000000000LL / scale);
}

/* common_pid of a trace line: "  comm-PID  [000] ..." */
static int
linePid(const char *line)
{
    const char *b = strstr(line, " [");
    const char *p;

    if (b == NULL)
        return -1;
    while (b > line && b[-1] == ' ')
        b--;
    p = b;
    while (p > line && isdigit((unsigned char) p[-1]))
        p--;
    return p < b && p > line && p[-1] == '-' ? atoi(p) : -1;
}

static int
argNum(const char *line, const char *name)
{
    const char *p = strstr(line, name);

    return p ? atoi(p + strlen(name)) : -1;
}

static void
addEv(struct ev e)
{
    if (nevs == cevs) {
        cevs = cevs ? 2 * cevs : 1024;
        evs = realloc(evs, cevs * sizeof(*evs));
        if (evs == NULL)
            fatal("out of memory");
    }
    evs[nevs++] = e;
}

static void
readTrace(void)
{
    FILE *f = fopen(TRACEFS "/trace", "r");
    char line[512];

    if (f == NULL)
        fatal("%s:", TRACEFS "/trace");
    while (fgets(line, sizeof(line), f) != NULL) {
        struct ev e;
        char *at;

        if (line[0] == '#')
            continue;
        memset(&e, 0, sizeof(e));
        if ((at = strstr(line, ": signal_generate: ")) != NULL) {
            e.kind = K_GEN;
            e.sig = argNum(at, "sig=");
            e.code = argNum(at, "code=");
            e.pid = argNum(at, " pid=");
            e.result = argNum(at, "res=");
        } else if ((at = strstr(line, ": take: ")) != NULL) {
            const char *caller = at + 8;

            e.kind = K_TAKE;
            e.sig = argNum(at, "ret=");
            e.pid = linePid(line);
            if (e.sig <= 0)
                continue;
            if (caller[0] == '(')
                caller++;
            if (strncmp(caller, "get_signal", 10) == 0)
                snprintf(e.how, sizeof(e.how), "taken");
            else if (strncmp(caller, "do_sigtimedwait", 15) == 0)
                snprintf(e.how, sizeof(e.how), "by sigwaitinfo");
            else if (strncmp(caller, "signalfd", 8) == 0)
                snprintf(e.how, sizeof(e.how), "by signalfd");
            else
                snprintf(e.how, sizeof(e.how), "%.*s", (int) strcspn(caller, "+ )"), caller);
        } else if ((at = strstr(line, ": signal_deliver: ")) != NULL) {
            unsigned long handler = strtoul(strstr(at, "sa_handler=") ? strstr(at, "sa_handler=") + 11 : "0",
                                            NULL, 16);

            e.kind = K_DELIVER;
            e.sig = argNum(at, "sig=");
            e.pid = linePid(line);
            snprintf(e.how, sizeof(e.how), "%s", handler == 0 ? "by the default action" :
                     handler == 1 ? "ignored (SIG_IGN)" : "by its handler");
        } else {
            continue;
        }
        e.ns = parseTs(line, at);
        if (e.ns < startNs || (stopNs && e.ns > stopNs) || !isWanted(e.pid))
            continue;
        /* signal_deliver follows the take of get_signal(): say which action. */
        if (e.kind == K_DELIVER) {
            for (int i = nevs - 1; i >= 0 && i >= nevs - 4; i--) {
                if (evs[i].kind == K_TAKE && evs[i].pid == e.pid && evs[i].sig == e.sig &&
                    strcmp(evs[i].how, "taken") == 0) {
                    snprintf(evs[i].how, sizeof(evs[i].how), "%s", e.how);
                    goto next;
                }
            }
            /* A SIGKILL delivered where the last signal generated for the process was another one:
               complete_signal() found that one fatal (default action, not blocked) and made the
               whole process exit with SIGKILL; the signal itself is never taken. */
            for (int i = nevs - 1; e.sig == SIGKILL && i >= 0 && i >= nevs - 64; i--) {
                char sb[32];

                if (evs[i].kind != K_GEN || evs[i].pid != e.pid)
                    continue;
                if (evs[i].sig != SIGKILL)
                    snprintf(e.how, sizeof(e.how), "%s was fatal: complete_signal() kills the process",
                             sigName(evs[i].sig, sb, sizeof(sb)));
                break;
            }
        }
        addEv(e);
next:
        ;
    }
    fclose(f);
}

static const char *
codeName(int sig, int code, char *buf, size_t size)
{
    static const char *const poll[] = { "", "POLL_IN", "POLL_OUT", "POLL_MSG", "POLL_ERR", "POLL_PRI", "POLL_HUP" };
    static const char *const cld[] = { "", "CLD_EXITED", "CLD_KILLED", "CLD_DUMPED", "CLD_TRAPPED",
                                       "CLD_STOPPED", "CLD_CONTINUED" };

    switch (code) {
    case 0: return "SI_USER";
    case 0x80: return "SI_KERNEL";
    case -1: return "SI_QUEUE";
    case -2: return "SI_TIMER";
    case -3: return "SI_MESGQ";
    case -4: return "SI_ASYNCIO";
    case -5: return "SI_SIGIO";
    case -6: return "SI_TKILL";
    }
    if (code >= 1 && code <= 6 && (sig == SIGIO || sig >= SIGRTMIN))
        return poll[code];
    if (code >= 1 && code <= 6 && sig == SIGCHLD)
        return cld[code];
    snprintf(buf, size, "code %d", code);
    return buf;
}

static const char *
evText(const struct ev *e, char *buf, size_t size)
{
    static const char *const res[NRESULT] = {
        "made pending", "ignored", "merged (already pending)", "queue full", "info lost",
    };
    char sb[32], cb[32];

    if (e->kind == K_GEN)
        snprintf(buf, size, "generate  %-12s pid %-6d %s, %s", sigName(e->sig, sb, sizeof(sb)), e->pid,
                 e->result >= 0 && e->result < NRESULT ? res[e->result] : "?",
                 codeName(e->sig, e->code, cb, sizeof(cb)));
    else if (e->kind == K_TAKE)
        snprintf(buf, size, "take      %-12s pid %-6d %s", sigName(e->sig, sb, sizeof(sb)), e->pid, e->how);
    else
        snprintf(buf, size, "deliver   %-12s pid %-6d %s", sigName(e->sig, sb, sizeof(sb)), e->pid, e->how);
    return buf;
}

static void
printTimeline(long maxLines)
{
    long long start = startNs, oldest;
    long overrun;
    char buf[160], text[160];
    long lines = 0, total = 0, head, tail;
    int i, j;

    readTrace();
    /* Runs of the same event (a burst's merges) become one line. */
    for (i = 0; i < nevs; i = j) {
        for (j = i + 1; j < nevs && strcmp(evText(&evs[i], buf, sizeof(buf)),
                                           evText(&evs[j], text, sizeof(text))) == 0; j++)
            ;
        total++;
    }
    head = maxLines > 0 && total > maxLines ? maxLines * 3 / 4 : total;
    tail = maxLines > 0 && total > maxLines ? maxLines - head : 0;
    printf("timeline (seconds after `sigtrace start`, at CLOCK_MONOTONIC %lld.%06lld s):\n",
           start / 1000000000LL, start % 1000000000LL / 1000);
    for (i = 0; i < nevs; i = j) {
        for (j = i + 1; j < nevs && strcmp(evText(&evs[i], buf, sizeof(buf)),
                                           evText(&evs[j], text, sizeof(text))) == 0; j++)
            ;
        lines++;
        if (lines == head + 1 && tail > 0)
            printf("  ... %ld lines not shown ...\n", total - head - tail);
        if (lines > head && lines <= total - tail)
            continue;
        evText(&evs[i], buf, sizeof(buf));
        if (j - i > 1)
            printf("  %+11.6f  %s  (x%d, to %+.6f)\n", (evs[i].ns - start) / 1e9, buf, j - i,
                   (evs[j - 1].ns - start) / 1e9);
        else
            printf("  %+11.6f  %s\n", (evs[i].ns - start) / 1e9, buf);
    }
    if (nevs == 0)
        printf("  (nothing)\n");
    bufferStats(&overrun, &oldest);
    if (overrun > startOverrun && oldest > start)
        printf("sigtrace: the trace buffer wrapped: what happened before %+.6f s is not in this "
               "timeline (the counts are complete)\n", (oldest - start) / 1e9);
}

static void
cmdShow(int timeline, long maxLines, int roots)
{
    needTracefs();
    readRecord();
    if (roots > 0)
        addDescendants();
    printSummary(roots);
    if (missedTakes > 0)
        printf("sigtrace: warning: the kretprobe missed %ld takes\n", missedTakes);
    if (timeline)
        printTimeline(maxLines);
}

/* --- sigtrace -- COMMAND ------------------------------------------------------ */

static int
cmdRun(char *argv[], int timeline, long maxLines)
{
    /* `kill -USR1 %1` or ^C signal the whole job, COMMAND and us: the
       signals a program under test may be sent are ignored here (like
       system() ignores SIGINT and SIGQUIT), so we stay to show the record. */
    static const int passOn[] = { SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM,
                                  SIGTERM, SIGIO };
    struct sigaction ign, old[sizeof(passOn) / sizeof(passOn[0])];
    int status;
    pid_t pid;

    needTracefs();
    cmdStart();
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    for (size_t i = 0; i < sizeof(passOn) / sizeof(passOn[0]); i++)
        sigaction(passOn[i], &ign, &old[i]);
    fflush(stdout);
    pid = fork();
    if (pid == -1)
        fatal("fork:");
    if (pid == 0) {
        for (size_t i = 0; i < sizeof(passOn) / sizeof(passOn[0]); i++)
            sigaction(passOn[i], &old[i], NULL);
        execvp(argv[0], argv);
        fprintf(stderr, "sigtrace: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    while (waitpid(pid, &status, 0) == -1)
        if (errno != EINTR)
            fatal("waitpid:");
    cmdStop();
    fflush(stdout);
    fprintf(stderr, "sigtrace: %s %s %d\n", argv[0],
            WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    wanted = malloc(sizeof(*wanted));
    if (wanted == NULL)
        fatal("out of memory");
    wanted[0] = pid;
    nwanted = 1;
    cmdShow(timeline, maxLines, 1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int
main(int argc, char *argv[])
{
    int timeline = 0, show = 0, opt;
    long maxLines = 0;
    char *end;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "--help") == 0)
        usage(stdout, EXIT_SUCCESS);
    if (argc > 1 && (strcmp(argv[1], "start") == 0 || strcmp(argv[1], "stop") == 0)) {
        if (argc != 2)
            usage(stderr, 2);
        if (argv[1][2] == 'a')
            cmdStart();
        else
            cmdStop();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "show") == 0) {
        show = 1;
        argv++;
        argc--;
    } else if (argc < 2 || (strcmp(argv[1], "--") != 0 && argv[1][0] != '-')) {
        usage(stderr, 2);
    }
    while ((opt = getopt(argc, argv, "+tn:p:h")) != -1) {
        switch (opt) {
        case 't':
            timeline = 1;
            break;
        case 'n':
            maxLines = strtol(optarg, &end, 10);
            if (*end != '\0' || maxLines < 4)
                usage(stderr, 2);
            break;
        case 'p':
            wanted = realloc(wanted, (nwanted + 1) * sizeof(*wanted));
            if (wanted == NULL)
                fatal("out of memory");
            wanted[nwanted] = strtol(optarg, &end, 10);
            if (*end != '\0' || wanted[nwanted] <= 0)
                usage(stderr, 2);
            nwanted++;
            break;
        case 'h':
            usage(stdout, EXIT_SUCCESS);
        default:
            usage(stderr, 2);
        }
    }
    if (show) {
        if (optind != argc)
            usage(stderr, 2);
        cmdShow(timeline, maxLines, nwanted);
        return 0;
    }
    if (optind >= argc || nwanted > 0)
        usage(stderr, 2);
    return cmdRun(&argv[optind], timeline, maxLines);
}
