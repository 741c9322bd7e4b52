/*
 * sigsafe.c - a run-time checker for async-signal safety (LD_PRELOAD library)
 *
 * A signal handler may call only the functions that signal-safety(7) lists.
 * This library, preloaded into a program, reports every call made from a
 * signal handler to a well-known function that is NOT on that list
 * (printf and the rest of stdio, malloc and free, exit, strerror, ...):
 *
 *	sigsafe: printf() called from the handler for SIGINT (on_int)
 *
 * How it works:
 *
 * 1. It interposes sigaction(), signal(), sysv_signal(), __sysv_signal()
 *    (what signal() becomes under -std=c11), bsd_signal() and sigset().  A
 *    handler being installed is remembered in acts[sig] and the kernel gets
 *    our trampoline instead, with the user's flags and mask (plus SA_SIGINFO,
 *    which the trampoline needs).  sigaction()'s oldact shows the user's
 *    handler again, so programs that save and restore handlers still work.
 *    SIG_IGN and SIG_DFL pass straight through.  The handler's name is looked
 *    up once, when it is installed: in the ELF .symtab of the file it lives
 *    in (a student's handler is usually static, which dladdr() cannot name),
 *    falling back to dladdr() and then to its address in hex.
 *
 * 2. The trampoline pushes (signal, handler, its own frame address) on a
 *    small per-thread stack, calls the user's handler with the same
 *    arguments, and pops.  While that stack is not empty, a handler is
 *    running on this thread.
 *
 * 3. Each non-async-signal-safe function is wrapped: the wrapper checks the
 *    per-thread stack and, inside a handler, writes one line per (signal,
 *    handler, function) with open(O_APPEND)+write() to $SIGSAFE_LOG, or to
 *    stderr when that is unset.  Then it calls the real function, found with
 *    dlsym(RTLD_NEXT) (under AddressSanitizer that is ASan's interceptor).
 *    A per-thread "inside" count keeps the calls that a wrapped function
 *    makes itself (printf calling malloc) from being reported as well.
 *    Calls made outside handlers are never reported, nor are the safe
 *    functions (write, read, _exit, sigprocmask, kill, ...): they are not
 *    wrapped at all.
 *
 * 4. A handler that leaves with siglongjmp()/longjmp() never returns to the
 *    trampoline.  The longjmp family is wrapped: the target stack pointer is
 *    read from the jmp_buf (x86-64 glibc; elsewhere the innermost handler is
 *    assumed to be left) and every handler whose trampoline frame lies below
 *    it is popped.  A jump we do not see (__builtin_longjmp, swapcontext)
 *    is caught from the stack: a handler whose trampoline frame lies below
 *    the current stack pointer (or the interrupted one, when the next signal
 *    arrives), or whose frame no longer holds the cookie the trampoline put
 *    there (deeper calls have reused that stack), is not running any more.
 *
 * malloc and friends: dlsym() may allocate before the real malloc is known,
 * so the first few allocations are served from a static buffer (and never
 * freed).  Everything the library does in a handler is itself
 * async-signal-safe: no stdio, no malloc, fixed tables, write(2).
 *
 * Limits (see README.md): only dynamically linked programs; only calls that
 * go through the dynamic linker (not inlined code, not raw syscalls); only
 * handlers installed with the functions above (not signalfd or sigwait,
 * which run no handler).
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <err.h>
#include <error.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define MAXNEST		8	/* handlers recorded per thread */
#define MAXNAMES	64	/* distinct handlers named */
#define NAMELEN		56
#define MAXSEEN		256	/* distinct (signal, handler, function) reported */

/* ---- per-thread state: which handlers are running ------------------------ */

struct level {
	int sig;
	void *handler;
	uintptr_t frame;	/* the trampoline's frame address */
	volatile uintptr_t *cookie;	/* a word in that frame ... */
	uintptr_t expect;	/* ... holds this while the trampoline runs */
};

struct tstate {
	int depth;		/* handlers running on this thread */
	int inside;		/* wrapped functions running (nested calls) */
	uintptr_t seq;		/* trampoline entries, for the cookies */
	struct level lv[MAXNEST];
};

static __thread struct tstate ts __attribute__((tls_model("initial-exec")));

/* The user's handler for each signal (what sigaction() was given). */
static struct {
	void *handler;
	int flags;
} acts[NSIG];

/* Handler names, looked up when the handler is installed. */
static struct {
	void *addr;
	char name[NAMELEN];
} names[MAXNAMES];
static int nnames;

/* What was reported already. */
static struct {
	int sig;
	void *handler;
	const char *fn;
} seen[MAXSEEN];
static int nseen;

static char logpath[4096];
static int logfd = -1;		/* the grader's pipe (runas -s), when there is one */
static uintptr_t secret;	/* makes the trampolines' cookies unguessable */

/* ---- the real functions ---------------------------------------------------- */

/*
 * The real dlsym() and dlvsym(): this library wraps both (below), and its
 * own calls to them would reach its wrappers, so it finds glibc's in libc's
 * dynamic symbol table (its GNU hash table), once, at start-up.
 */
static void *(*real_dlsym)(void *, const char *);
static void *(*real_dlvsym)(void *, const char *, const char *);

/* Plain loops: AddressSanitizer intercepts strstr() and strcmp() too. */
static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static int is_libc(const char *path)
{
	const char *base = path;

	for (; *path; path++)
		if (*path == '/')
			base = path + 1;
	return base[0] == 'l' && base[1] == 'i' && base[2] == 'b' &&
	       base[3] == 'c' && base[4] == '.' && base[5] == 's' &&
	       base[6] == 'o';
}

/* A symbol defined in libc, found in the loader's list of objects with no
   call to a library: this may run before AddressSanitizer has set up its
   interceptors (dl_iterate_phdr(), strcmp() ...), when it looks up the real
   functions with dlsym(). */
static void *libc_symbol(const char *name)
{
	const struct link_map *m;
	const ElfW(Dyn) *dyn;
	const ElfW(Sym) *symtab;
	const char *strtab, *c;
	const uint32_t *gh, *buckets, *chain;
	const ElfW(Addr) *bloom;
	uint32_t hash = 5381, i;

	for (c = name; *c; c++)
		hash = hash * 33 + (unsigned char)*c;
	for (m = _r_debug.r_map; m; m = m->l_next) {
		if (!m->l_name || !is_libc(m->l_name))
			continue;
		symtab = NULL;
		strtab = NULL;
		gh = NULL;
		for (dyn = m->l_ld; dyn && dyn->d_tag != DT_NULL; dyn++) {
			/* ld.so has made these absolute on most architectures */
			uintptr_t v = dyn->d_un.d_ptr;

			if (v < m->l_addr)
				v += m->l_addr;
			if (dyn->d_tag == DT_SYMTAB)
				symtab = (const void *)v;
			else if (dyn->d_tag == DT_STRTAB)
				strtab = (const void *)v;
			else if (dyn->d_tag == DT_GNU_HASH)
				gh = (const void *)v;
		}
		if (!symtab || !strtab || !gh || gh[0] == 0)
			return NULL;
		bloom = (const void *)&gh[4];
		buckets = (const void *)&bloom[gh[2]];
		chain = &buckets[gh[0]];
		i = buckets[hash % gh[0]];
		if (i < gh[1])
			return NULL;
		for (;; i++) {
			uint32_t h = chain[i - gh[1]];

			if ((h | 1) == (hash | 1) &&
			    same(strtab + symtab[i].st_name, name) &&
			    symtab[i].st_shndx != SHN_UNDEF)
				return (void *)(m->l_addr + symtab[i].st_value);
			if (h & 1)
				return NULL;
		}
	}
	return NULL;
}

static void find_dlsym(void)
{
	if (real_dlsym)
		return;
	real_dlvsym = (void *(*)(void *, const char *, const char *))
		libc_symbol("dlvsym");
	real_dlsym = (void *(*)(void *, const char *))libc_symbol("dlsym");
}

static void *resolve(const char *name)
{
	void *p;

	find_dlsym();
	p = real_dlsym ? real_dlsym(RTLD_NEXT, name) : NULL;

	if (!p) {
		static const char msg[] = "sigsafe: cannot find the real ";

		write(2, msg, sizeof(msg) - 1);
		write(2, name, strlen(name));
		write(2, "()\n", 3);
		_exit(127);
	}
	return p;
}

#define REAL(fn)	static __typeof__(fn) *real_##fn
#define GET(fn)		({						\
	if (!real_##fn)							\
		real_##fn = (__typeof__(fn) *)resolve(#fn);		\
	real_##fn;							\
})

/* ---- small async-signal-safe string helpers ---------------------------------- */

static char *put(char *p, char *end, const char *s)
{
	while (*s && p < end)
		*p++ = *s++;
	return p;
}

static char *put_hex(char *p, char *end, uintptr_t v)
{
	char tmp[2 + 2 * sizeof(v)];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	p = put(p, end, "0x");
	while (n && p < end)
		*p++ = tmp[--n];
	return p;
}

static char *put_dec(char *p, char *end, unsigned v)
{
	char tmp[12];
	int n = 0;

	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n && p < end)
		*p++ = tmp[--n];
	return p;
}

static char *put_signame(char *p, char *end, int sig)
{
	static const struct { int sig; const char *name; } tab[] = {
		{ SIGHUP, "SIGHUP" }, { SIGINT, "SIGINT" }, { SIGQUIT, "SIGQUIT" },
		{ SIGILL, "SIGILL" }, { SIGTRAP, "SIGTRAP" }, { SIGABRT, "SIGABRT" },
		{ SIGBUS, "SIGBUS" }, { SIGFPE, "SIGFPE" }, { SIGKILL, "SIGKILL" },
		{ SIGUSR1, "SIGUSR1" }, { SIGSEGV, "SIGSEGV" }, { SIGUSR2, "SIGUSR2" },
		{ SIGPIPE, "SIGPIPE" }, { SIGALRM, "SIGALRM" }, { SIGTERM, "SIGTERM" },
		{ SIGCHLD, "SIGCHLD" }, { SIGCONT, "SIGCONT" }, { SIGSTOP, "SIGSTOP" },
		{ SIGTSTP, "SIGTSTP" }, { SIGTTIN, "SIGTTIN" }, { SIGTTOU, "SIGTTOU" },
		{ SIGURG, "SIGURG" }, { SIGXCPU, "SIGXCPU" }, { SIGXFSZ, "SIGXFSZ" },
		{ SIGVTALRM, "SIGVTALRM" }, { SIGPROF, "SIGPROF" },
		{ SIGWINCH, "SIGWINCH" }, { SIGIO, "SIGIO" }, { SIGPWR, "SIGPWR" },
		{ SIGSYS, "SIGSYS" },
	};
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (tab[i].sig == sig)
			return put(p, end, tab[i].name);
	if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
		p = put(p, end, "SIGRTMIN");
		if (sig == SIGRTMIN)
			return p;
		p = put(p, end, "+");
		return put_dec(p, end, sig - SIGRTMIN);
	}
	p = put(p, end, "signal ");
	return put_dec(p, end, sig);
}

/* ---- naming a handler (done when it is installed) ------------------------------ */

struct where {
	uintptr_t addr;
	uintptr_t bias;
	const char *path;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *data)
{
	struct where *w = data;
	int i;

	(void)size;
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && w->addr >= lo &&
		    w->addr < lo + ph->p_memsz) {
			w->bias = info->dlpi_addr;
			w->path = info->dlpi_name;
			return 1;
		}
	}
	return 0;
}

/* Search one symbol table of a mapped ELF file for the function at off. */
static int search_symtab(const unsigned char *map, size_t size,
			 const ElfW(Shdr) *sh, int nsh, unsigned type,
			 uintptr_t off, char *buf, size_t len)
{
	const ElfW(Sym) *best = NULL;
	const char *strtab;
	int i;

	for (i = 0; i < nsh; i++) {
		const ElfW(Sym) *sym;
		size_t n, k;

		if (sh[i].sh_type != type || sh[i].sh_link >= (unsigned)nsh ||
		    sh[i].sh_offset + sh[i].sh_size > size ||
		    sh[sh[i].sh_link].sh_offset + sh[sh[i].sh_link].sh_size > size)
			continue;
		sym = (const ElfW(Sym) *)(map + sh[i].sh_offset);
		n = sh[i].sh_size / sizeof(*sym);
		strtab = (const char *)map + sh[sh[i].sh_link].sh_offset;
		for (k = 0; k < n; k++) {
			int t = ELF64_ST_TYPE(sym[k].st_info);

			if ((t != STT_FUNC && t != STT_NOTYPE) ||
			    sym[k].st_shndx == SHN_UNDEF ||
			    sym[k].st_name >= sh[sh[i].sh_link].sh_size ||
			    off < sym[k].st_value)
				continue;
			if (off == sym[k].st_value ||
			    off < sym[k].st_value + sym[k].st_size) {
				best = &sym[k];
				if (off == sym[k].st_value && t == STT_FUNC)
					break;
			}
		}
		if (best) {
			const char *s = strtab + best->st_name;
			const char *lim = strtab + sh[sh[i].sh_link].sh_size;
			size_t j = 0;

			/* on_int.constprop.0 -> on_int */
			while (s < lim && *s && *s != '.' && j + 1 < len)
				buf[j++] = *s++;
			buf[j] = '\0';
			return j > 0;
		}
	}
	return 0;
}

static int elf_name(const char *path, uintptr_t off, char *buf, size_t len)
{
	const ElfW(Ehdr) *eh;
	const ElfW(Shdr) *sh;
	unsigned char *map;
	struct stat st;
	int fd, ok = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(*eh)) {
		close(fd);
		return 0;
	}
	map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return 0;
	eh = (const ElfW(Ehdr) *)map;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 &&
	    eh->e_shentsize == sizeof(*sh) && eh->e_shoff > 0 &&
	    eh->e_shoff + (size_t)eh->e_shnum * sizeof(*sh) <= (size_t)st.st_size) {
		sh = (const ElfW(Shdr) *)(map + eh->e_shoff);
		ok = search_symtab(map, st.st_size, sh, eh->e_shnum,
				   SHT_SYMTAB, off, buf, len) ||
		     search_symtab(map, st.st_size, sh, eh->e_shnum,
				   SHT_DYNSYM, off, buf, len);
	}
	munmap(map, st.st_size);
	return ok;
}

static void lookup_name(void *handler, char *buf, size_t len)
{
	struct where w = { (uintptr_t)handler, 0, NULL };
	Dl_info info;
	char *p;

	if (dl_iterate_phdr(find_object, &w) && w.path &&
	    elf_name(*w.path ? w.path : "/proc/self/exe", w.addr - w.bias,
		     buf, len))
		return;
	if (dladdr(handler, &info) && info.dli_sname &&
	    info.dli_saddr == handler) {
		p = put(buf, buf + len - 1, info.dli_sname);
		*p = '\0';
		return;
	}
	p = put_hex(buf, buf + len - 1, (uintptr_t)handler);
	*p = '\0';
}

static void name_handler(void *handler)
{
	int i, n = __atomic_load_n(&nnames, __ATOMIC_ACQUIRE);

	for (i = 0; i < n && i < MAXNAMES; i++)
		if (__atomic_load_n(&names[i].addr, __ATOMIC_ACQUIRE) == handler)
			return;
	i = __atomic_fetch_add(&nnames, 1, __ATOMIC_ACQ_REL);
	if (i >= MAXNAMES)
		return;		/* reported by address */
	lookup_name(handler, names[i].name, NAMELEN);
	__atomic_store_n(&names[i].addr, handler, __ATOMIC_RELEASE);
}

/* ---- reporting (runs inside handlers) ------------------------------------------ */

/* One line to the log: the grader's pipe, the file $SIGSAFE_LOG names, or stderr. */
static void log_line(const char *line, size_t len)
{
	int fd = logfd;
	ssize_t r;

	if (fd < 0)
		fd = logpath[0] ? open(logpath, O_WRONLY | O_APPEND | O_CREAT |
				       O_CLOEXEC, 0644) : 2;
	if (fd < 0)
		return;
	r = write(fd, line, len);
	(void)r;
	if (fd != 2 && fd != logfd)
		close(fd);
}

static void report(const struct level *l, const char *fn)
{
	char line[256], *p = line, *end = line + sizeof(line) - 1;
	const char *name = NULL;
	int i, n, saved_errno = errno;

	n = __atomic_load_n(&nseen, __ATOMIC_ACQUIRE);
	for (i = 0; i < n && i < MAXSEEN; i++)
		if (__atomic_load_n(&seen[i].fn, __ATOMIC_ACQUIRE) == fn &&
		    seen[i].sig == l->sig && seen[i].handler == l->handler)
			return;
	i = __atomic_fetch_add(&nseen, 1, __ATOMIC_ACQ_REL);
	if (i < MAXSEEN) {
		seen[i].sig = l->sig;
		seen[i].handler = l->handler;
		__atomic_store_n(&seen[i].fn, fn, __ATOMIC_RELEASE);
	}

	n = __atomic_load_n(&nnames, __ATOMIC_ACQUIRE);
	for (i = 0; i < n && i < MAXNAMES; i++)
		if (__atomic_load_n(&names[i].addr, __ATOMIC_ACQUIRE) == l->handler)
			name = names[i].name;

	p = put(p, end, "sigsafe: ");
	p = put(p, end, fn);
	p = put(p, end, "() called from the handler for ");
	p = put_signame(p, end, l->sig);
	p = put(p, end, " (");
	p = name ? put(p, end, name) : put_hex(p, end, (uintptr_t)l->handler);
	p = put(p, end, ")");
	*p++ = '\n';

	log_line(line, p - line);
	errno = saved_errno;
}

/*
 * A handler that returns with errno changed: the code it interrupted may
 * have been about to read errno (a failed call's reason), and now reads the
 * handler's.  One line per handler, apart from the calls above:
 *	sigsafe: errno: the handler for SIGIO (on_io) changed errno (0 to 11) and did not restore it
 */
static void report_errno(int sig, void *handler, int before, int after)
{
	static struct { int sig; void *handler; } done[MAXSEEN];
	static int ndone;
	char line[256], *p = line, *end = line + sizeof(line) - 1;
	const char *name = NULL;
	int i, n;

	n = __atomic_load_n(&ndone, __ATOMIC_ACQUIRE);
	for (i = 0; i < n && i < MAXSEEN; i++)
		if (done[i].sig == sig && done[i].handler == handler)
			return;
	i = __atomic_fetch_add(&ndone, 1, __ATOMIC_ACQ_REL);
	if (i < MAXSEEN) {
		done[i].sig = sig;
		done[i].handler = handler;
	}
	n = __atomic_load_n(&nnames, __ATOMIC_ACQUIRE);
	for (i = 0; i < n && i < MAXNAMES; i++)
		if (__atomic_load_n(&names[i].addr, __ATOMIC_ACQUIRE) == handler)
			name = names[i].name;

	p = put(p, end, "sigsafe: errno: the handler for ");
	p = put_signame(p, end, sig);
	p = put(p, end, " (");
	p = name ? put(p, end, name) : put_hex(p, end, (uintptr_t)handler);
	p = put(p, end, ") changed errno (");
	p = put_dec(p, end, before);
	p = put(p, end, " to ");
	p = put_dec(p, end, after);
	p = put(p, end, ") and did not restore it");
	*p++ = '\n';

	log_line(line, p - line);
	errno = after;
}

/*
 * Forget the handlers that were left without returning (a longjmp we did not
 * see): sp is where we are now (or where the signal interrupted), and a
 * handler still running has its trampoline frame above sp, with the cookie
 * intact.  A frame below sp was popped; an overwritten cookie means the
 * stack was reused by deeper calls since.  The cookie is read only when the
 * frame is a little above sp, so in memory still mapped.
 */
static void pop_left(struct tstate *t, uintptr_t sp)
{
	while (t->depth > 0 && t->depth <= MAXNEST) {
		const struct level *l = &t->lv[t->depth - 1];

		if (l->frame > sp && l->frame - sp < (1 << 20) &&
		    *l->cookie == l->expect)
			break;
		if (l->frame > sp && l->frame - sp >= (1 << 20))
			break;	/* another stack, or very deep: assume running */
		t->depth--;
	}
}

static __attribute__((noinline)) void note(struct tstate *t, const char *fn)
{
	pop_left(t, (uintptr_t)__builtin_frame_address(0));
	if (t->depth > 0)
		report(&t->lv[(t->depth < MAXNEST ? t->depth : MAXNEST) - 1], fn);
}

/* Every wrapper starts with enter() and ends with leave(). */
static inline void enter(const char *fn)
{
	struct tstate *t = &ts;

	if (t->depth && !t->inside)
		note(t, fn);
	t->inside++;
}

static inline void leave(void)
{
	ts.inside--;
}

/* ---- the trampoline and the handler-installing functions ----------------------- */

static uintptr_t interrupted_sp(void *uc)
{
#if defined(__x86_64__)
	return ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
#elif defined(__i386__)
	return ((ucontext_t *)uc)->uc_mcontext.gregs[REG_ESP];
#elif defined(__aarch64__)
	return ((ucontext_t *)uc)->uc_mcontext.sp;
#else
	(void)uc;
	return 0;
#endif
}

static void trampoline(int sig, siginfo_t *info, void *uc)
{
	struct tstate *t = &ts;
	void *h = __atomic_load_n(&acts[sig].handler, __ATOMIC_ACQUIRE);
	int flags = acts[sig].flags;
	int depth, inside, before;
	uintptr_t sp = uc ? interrupted_sp(uc) : 0;
	volatile uintptr_t cookie;

	if (flags & SA_RESETHAND)	/* the kernel has reset it to SIG_DFL */
		__atomic_store_n(&acts[sig].handler, (void *)SIG_DFL,
				 __ATOMIC_RELEASE);
	if (sp)
		pop_left(t, sp);	/* left by a longjmp we did not see */
	if (h == (void *)SIG_DFL || h == (void *)SIG_IGN)
		return;			/* raced with another thread's update */

	depth = t->depth;
	inside = t->inside;
	if (depth < MAXNEST) {
		t->lv[depth].sig = sig;
		t->lv[depth].handler = h;
		t->lv[depth].frame = (uintptr_t)__builtin_frame_address(0);
		t->lv[depth].cookie = &cookie;
		t->lv[depth].expect = cookie = secret ^ (uintptr_t)&cookie ^
					       ++t->seq;
	}
	t->depth = depth + 1;
	t->inside = 0;

	before = errno;
	if (flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))h)(sig, info, uc);
	else
		((void (*)(int))h)(sig);
	if (errno != before)	/* reported; left as the handler left it */
		report_errno(sig, h, before, errno);

	cookie = 0;
	t->depth = depth;
	t->inside = inside;
}

REAL(sigaction);

static int do_sigaction(int sig, const struct sigaction *act,
			struct sigaction *oldact)
{
	struct sigaction kact, kold;
	sigset_t all, saved;
	void *prev_handler;
	int prev_flags, r, e;

	if (sig <= 0 || sig >= NSIG)
		return GET(sigaction)(sig, act, oldact);

	if (act) {
		kact = *act;
		if (act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN) {
			name_handler((void *)act->sa_handler);
			kact.sa_sigaction = trampoline;
			kact.sa_flags |= SA_SIGINFO;
		}
	}

	/* The table and the kernel change together, as far as we can see. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	prev_handler = acts[sig].handler;
	prev_flags = acts[sig].flags;
	if (act) {
		acts[sig].flags = act->sa_flags;
		__atomic_store_n(&acts[sig].handler, (void *)act->sa_handler,
				 __ATOMIC_RELEASE);
	}
	r = GET(sigaction)(sig, act ? &kact : NULL, &kold);
	e = errno;
	if (r < 0 && act) {
		acts[sig].flags = prev_flags;
		acts[sig].handler = prev_handler;
	}
	pthread_sigmask(SIG_SETMASK, &saved, NULL);

	if (r == 0 && oldact) {
		*oldact = kold;
		if (kold.sa_sigaction == trampoline) {
			/* show the user's handler, not ours */
			oldact->sa_handler = (void (*)(int))prev_handler;
			oldact->sa_flags &= ~SA_SIGINFO;
			oldact->sa_flags |= prev_flags & SA_SIGINFO;
		}
	}
	errno = e;
	return r;
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *oldact)
{
	int r;

	ts.inside++;
	r = do_sigaction(sig, act, oldact);
	ts.inside--;
	return r;
}

static sighandler_t install(int sig, sighandler_t handler, int flags,
			    int mask_self)
{
	struct sigaction act, old;
	int r;

	if (handler == SIG_ERR || sig <= 0 || sig >= NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	memset(&act, 0, sizeof(act));
	act.sa_handler = handler;
	sigemptyset(&act.sa_mask);
	if (mask_self)
		sigaddset(&act.sa_mask, sig);
	act.sa_flags = flags;
	ts.inside++;
	r = do_sigaction(sig, &act, &old);
	ts.inside--;
	return r < 0 ? SIG_ERR : old.sa_handler;
}

/* glibc's signal(): BSD semantics, the handler stays and calls restart. */
sighandler_t signal(int sig, sighandler_t handler)
{
	return install(sig, handler, SA_RESTART, 1);
}

sighandler_t bsd_signal(int sig, sighandler_t handler)
{
	return install(sig, handler, SA_RESTART, 1);
}

/* System V semantics (signal() under -std=c11): one-shot, not blocked. */
sighandler_t sysv_signal(int sig, sighandler_t handler)
{
	return install(sig, handler, SA_RESETHAND | SA_NODEFER, 0);
}

sighandler_t __sysv_signal(int sig, sighandler_t handler)
{
	return install(sig, handler, SA_RESETHAND | SA_NODEFER, 0);
}

sighandler_t sigset(int sig, sighandler_t disp)
{
	struct sigaction act, old;
	sigset_t set, oldmask;
	sighandler_t r = SIG_ERR;

	if (sig <= 0 || sig >= NSIG || disp == SIG_ERR) {
		errno = EINVAL;
		return SIG_ERR;
	}
	sigemptyset(&set);
	sigaddset(&set, sig);
	ts.inside++;
	if (disp == SIG_HOLD) {
		if (sigprocmask(SIG_BLOCK, &set, &oldmask) == 0 &&
		    do_sigaction(sig, NULL, &old) == 0)
			r = sigismember(&oldmask, sig) ? SIG_HOLD : old.sa_handler;
	} else {
		memset(&act, 0, sizeof(act));
		act.sa_handler = disp;
		sigemptyset(&act.sa_mask);
		if (do_sigaction(sig, &act, &old) == 0 &&
		    sigprocmask(SIG_UNBLOCK, &set, &oldmask) == 0)
			r = sigismember(&oldmask, sig) ? SIG_HOLD : old.sa_handler;
	}
	ts.inside--;
	return r;
}

/* ---- leaving a handler with longjmp --------------------------------------------- */

static uintptr_t jmpbuf_sp(const void *env)
{
#if defined(__x86_64__) && defined(__GLIBC__)
	/* glibc keeps rsp in __jmpbuf[6], mangled: rol 0x11 of (rsp ^ guard) */
	const long *jb = env;
	uintptr_t v = (uintptr_t)jb[6], guard;

	__asm__("mov %%fs:0x30, %0" : "=r"(guard));
	v = (v >> 0x11) | (v << (64 - 0x11));
	return v ^ guard;
#else
	(void)env;
	return 0;
#endif
}

static __attribute__((noinline)) void jumping(const void *env)
{
	struct tstate *t = &ts;
	uintptr_t target, here = (uintptr_t)__builtin_frame_address(0);

	if (!t->depth)
		return;
	target = jmpbuf_sp(env);
	if (target > here)
		while (t->depth > 0 && t->depth <= MAXNEST &&
		       t->lv[t->depth - 1].frame < target)
			t->depth--;
	else
		t->depth--;	/* unknown target: assume it leaves this handler */
	t->inside = 0;
}

#define WRAP_JMP(fn)						\
REAL(fn);								\
void fn(struct __jmp_buf_tag env[1], int val)						\
{									\
	jumping(env);							\
	GET(fn)(env, val);						\
	__builtin_unreachable();					\
}

WRAP_JMP(longjmp)
WRAP_JMP(_longjmp)
WRAP_JMP(siglongjmp)

extern void __longjmp_chk(struct __jmp_buf_tag env[1], int val)
	__attribute__((noreturn));
WRAP_JMP(__longjmp_chk)

/* ---- malloc and friends ----------------------------------------------------------- */

static unsigned char boot[1 << 16] __attribute__((aligned(16)));
static size_t boot_used;
static int resolving;

REAL(malloc);
REAL(calloc);
REAL(realloc);
REAL(free);

static int is_boot(void *p)
{
	return (unsigned char *)p >= boot && (unsigned char *)p < boot + sizeof(boot);
}

/* Allocations made while dlsym() looks up the real malloc. */
static void *boot_alloc(size_t n)
{
	size_t need = (n + 31) & ~(size_t)15, at;
	unsigned char *p;

	at = __atomic_fetch_add(&boot_used, need, __ATOMIC_RELAXED);
	if (at + need > sizeof(boot))
		return NULL;
	p = boot + at;
	memcpy(p, &n, sizeof(n));
	return p + 16;
}

static int alloc_ready(void)
{
	if (real_free)
		return 1;
	if (__atomic_exchange_n(&resolving, 1, __ATOMIC_ACQ_REL))
		return 0;
	real_malloc = resolve("malloc");
	real_calloc = resolve("calloc");
	real_realloc = resolve("realloc");
	__atomic_store_n(&real_free, (__typeof__(free) *)resolve("free"),
			 __ATOMIC_RELEASE);
	return 1;
}

void *malloc(size_t n)
{
	void *p;

	if (!alloc_ready())
		return boot_alloc(n);
	enter("malloc");
	p = real_malloc(n);
	leave();
	return p;
}

void *calloc(size_t n, size_t size)
{
	void *p;

	if (!alloc_ready()) {
		if (size && n > (size_t)-1 / size)
			return NULL;
		return boot_alloc(n * size);	/* static: already zero */
	}
	enter("calloc");
	p = real_calloc(n, size);
	leave();
	return p;
}

void *realloc(void *old, size_t n)
{
	void *p;

	if (!alloc_ready() || is_boot(old)) {
		size_t had = 0;

		if (old && is_boot(old))
			memcpy(&had, (unsigned char *)old - 16, sizeof(had));
		p = alloc_ready() ? malloc(n) : boot_alloc(n);
		if (p && old)
			memcpy(p, old, had < n ? had : n);
		return p;
	}
	enter("realloc");
	p = real_realloc(old, n);
	leave();
	return p;
}

void free(void *p)
{
	if (is_boot(p))
		return;
	if (!alloc_ready())
		return;		/* cannot happen: nothing was allocated yet */
	enter("free");
	real_free(p);
	leave();
}

/* ---- the other wrapped functions ------------------------------------------------ */

/* A wrapper that reports `name` and calls the real `fn` with the same args. */
#define WRAP_AS(ret, fn, name, params, args)				\
REAL(fn);								\
ret fn params								\
{									\
	ret r;								\
	enter(name);							\
	r = GET(fn) args;						\
	leave();							\
	return r;							\
}
#define WRAP(ret, fn, params, args)	WRAP_AS(ret, fn, #fn, params, args)

#define WRAP_VOID(fn, params, args)					\
REAL(fn);								\
void fn params								\
{									\
	enter(#fn);							\
	GET(fn) args;							\
	leave();							\
}

/* A printf-like wrapper: the real function is its v-variant. */
#define WRAP_FMT(fn, name, vfn, params, last, ...)			\
int fn params								\
{									\
	va_list ap;							\
	int r;								\
	enter(name);							\
	va_start(ap, last);						\
	r = GET(vfn)(__VA_ARGS__, ap);					\
	va_end(ap);							\
	leave();							\
	return r;							\
}

WRAP(void *, reallocarray, (void *p, size_t n, size_t size), (p, n, size))
WRAP(int, posix_memalign, (void **p, size_t a, size_t n), (p, a, n))
WRAP(void *, aligned_alloc, (size_t a, size_t n), (a, n))
WRAP(void *, memalign, (size_t a, size_t n), (a, n))
WRAP(char *, strdup, (const char *s), (s))
WRAP(char *, strndup, (const char *s, size_t n), (s, n))

/* stdio: formatted output */
WRAP(int, vprintf, (const char *f, va_list ap), (f, ap))
WRAP(int, vfprintf, (FILE *fp, const char *f, va_list ap), (fp, f, ap))
WRAP(int, vdprintf, (int fd, const char *f, va_list ap), (fd, f, ap))
WRAP(int, vsprintf, (char *s, const char *f, va_list ap), (s, f, ap))
WRAP(int, vsnprintf, (char *s, size_t n, const char *f, va_list ap),
     (s, n, f, ap))
WRAP(int, vasprintf, (char **s, const char *f, va_list ap), (s, f, ap))
WRAP_FMT(printf, "printf", vprintf, (const char *f, ...), f, f)
WRAP_FMT(fprintf, "fprintf", vfprintf, (FILE *fp, const char *f, ...), f, fp, f)
WRAP_FMT(dprintf, "dprintf", vdprintf, (int fd, const char *f, ...), f, fd, f)
WRAP_FMT(sprintf, "sprintf", vsprintf, (char *s, const char *f, ...), f, s, f)
WRAP_FMT(snprintf, "snprintf", vsnprintf,
	 (char *s, size_t n, const char *f, ...), f, s, n, f)
WRAP_FMT(asprintf, "asprintf", vasprintf, (char **s, const char *f, ...), f, s, f)

/* the same under -D_FORTIFY_SOURCE, reported by the name in the source */
extern int __vprintf_chk(int, const char *, va_list);
extern int __vfprintf_chk(FILE *, int, const char *, va_list);
extern int __vdprintf_chk(int, int, const char *, va_list);
extern int __vsprintf_chk(char *, int, size_t, const char *, va_list);
extern int __vsnprintf_chk(char *, size_t, int, size_t, const char *, va_list);
extern int __printf_chk(int, const char *, ...);
extern int __fprintf_chk(FILE *, int, const char *, ...);
extern int __dprintf_chk(int, int, const char *, ...);
extern int __sprintf_chk(char *, int, size_t, const char *, ...);
extern int __snprintf_chk(char *, size_t, int, size_t, const char *, ...);
WRAP_AS(int, __vprintf_chk, "vprintf", (int fl, const char *f, va_list ap),
	(fl, f, ap))
WRAP_AS(int, __vfprintf_chk, "vfprintf",
	(FILE *fp, int fl, const char *f, va_list ap), (fp, fl, f, ap))
WRAP_AS(int, __vdprintf_chk, "vdprintf",
	(int fd, int fl, const char *f, va_list ap), (fd, fl, f, ap))
WRAP_AS(int, __vsprintf_chk, "vsprintf",
	(char *s, int fl, size_t sl, const char *f, va_list ap),
	(s, fl, sl, f, ap))
WRAP_AS(int, __vsnprintf_chk, "vsnprintf",
	(char *s, size_t n, int fl, size_t sl, const char *f, va_list ap),
	(s, n, fl, sl, f, ap))
WRAP_FMT(__printf_chk, "printf", __vprintf_chk, (int fl, const char *f, ...),
	 f, fl, f)
WRAP_FMT(__fprintf_chk, "fprintf", __vfprintf_chk,
	 (FILE *fp, int fl, const char *f, ...), f, fp, fl, f)
WRAP_FMT(__dprintf_chk, "dprintf", __vdprintf_chk,
	 (int fd, int fl, const char *f, ...), f, fd, fl, f)
WRAP_FMT(__sprintf_chk, "sprintf", __vsprintf_chk,
	 (char *s, int fl, size_t sl, const char *f, ...), f, s, fl, sl, f)
WRAP_FMT(__snprintf_chk, "snprintf", __vsnprintf_chk,
	 (char *s, size_t n, int fl, size_t sl, const char *f, ...),
	 f, s, n, fl, sl, f)

/* stdio: the rest (the compiler turns printf("hi\n") into puts("hi")) */
#undef putc
#undef getc
#undef putchar
#undef getchar
WRAP(int, puts, (const char *s), (s))
WRAP(int, fputs, (const char *s, FILE *fp), (s, fp))
WRAP(int, putchar, (int c), (c))
WRAP(int, putc, (int c, FILE *fp), (c, fp))
extern int _IO_putc(int, FILE *);
WRAP_AS(int, _IO_putc, "putc", (int c, FILE *fp), (c, fp))
WRAP(int, fputc, (int c, FILE *fp), (c, fp))
WRAP(size_t, fwrite, (const void *b, size_t n, size_t m, FILE *fp),
     (b, n, m, fp))
WRAP(int, fflush, (FILE *fp), (fp))
WRAP_VOID(perror, (const char *s), (s))
WRAP(FILE *, fopen, (const char *p, const char *m), (p, m))
WRAP(FILE *, fdopen, (int fd, const char *m), (fd, m))
WRAP(FILE *, freopen, (const char *p, const char *m, FILE *fp), (p, m, fp))
WRAP(int, fclose, (FILE *fp), (fp))
WRAP(int, setvbuf, (FILE *fp, char *b, int mode, size_t n), (fp, b, mode, n))
WRAP(char *, fgets, (char *s, int n, FILE *fp), (s, n, fp))
WRAP(int, fgetc, (FILE *fp), (fp))
WRAP(int, getc, (FILE *fp), (fp))
extern int _IO_getc(FILE *);
WRAP_AS(int, _IO_getc, "getc", (FILE *fp), (fp))
WRAP(int, getchar, (void), ())
WRAP(size_t, fread, (void *b, size_t n, size_t m, FILE *fp), (b, n, m, fp))
WRAP(ssize_t, getline, (char **l, size_t *n, FILE *fp), (l, n, fp))
WRAP(FILE *, popen, (const char *c, const char *m), (c, m))
WRAP(int, pclose, (FILE *fp), (fp))

/*
 * stdio without the lock (unlocked_stdio(3)): the same buffer, updated with
 * no protection at all, so no safer in a handler.  (glibc may inline
 * getc_unlocked and putc_unlocked as macros: those calls are not seen.)
 */
#undef putc_unlocked
#undef getc_unlocked
#undef putchar_unlocked
#undef getchar_unlocked
#undef fputc_unlocked
#undef fgetc_unlocked
#undef fwrite_unlocked
#undef fread_unlocked
WRAP(int, fputs_unlocked, (const char *s, FILE *fp), (s, fp))
WRAP(size_t, fwrite_unlocked, (const void *b, size_t n, size_t m, FILE *fp),
     (b, n, m, fp))
WRAP(int, fputc_unlocked, (int c, FILE *fp), (c, fp))
WRAP(int, putc_unlocked, (int c, FILE *fp), (c, fp))
WRAP(int, putchar_unlocked, (int c), (c))
WRAP(int, fflush_unlocked, (FILE *fp), (fp))
WRAP(char *, fgets_unlocked, (char *s, int n, FILE *fp), (s, n, fp))
WRAP(size_t, fread_unlocked, (void *b, size_t n, size_t m, FILE *fp),
     (b, n, m, fp))
WRAP(int, fgetc_unlocked, (FILE *fp), (fp))
WRAP(int, getc_unlocked, (FILE *fp), (fp))
WRAP(int, getchar_unlocked, (void), ())

/*
 * err(3) and error(3): they print with stdio (and err, errx, and error with
 * a status, call exit()).  err, errx, warn and warnx pass their arguments
 * to the v-variants; error() and error_at_line() have none in glibc, so
 * they are done here as glibc does them, with the real stdio functions
 * (this library's wrappers do not report calls made inside a wrapper).
 */
WRAP_VOID(vwarn, (const char *f, va_list ap), (f, ap))
WRAP_VOID(vwarnx, (const char *f, va_list ap), (f, ap))

#define WRAP_ERR(fn, vfn, noreturn)					\
void fn(const char *f, ...)						\
{									\
	va_list ap;							\
	enter(#fn);							\
	va_start(ap, f);						\
	GET(vfn)(f, ap);						\
	va_end(ap);							\
	leave();							\
	noreturn;							\
}

REAL(verr);
REAL(verrx);
void verr(int status, const char *f, va_list ap)
{
	enter("verr");
	GET(verr)(status, f, ap);
	__builtin_unreachable();
}

void verrx(int status, const char *f, va_list ap)
{
	enter("verrx");
	GET(verrx)(status, f, ap);
	__builtin_unreachable();
}

WRAP_ERR(warn, vwarn, (void)0)
WRAP_ERR(warnx, vwarnx, (void)0)

void err(int status, const char *f, ...)
{
	va_list ap;

	enter("err");
	va_start(ap, f);
	GET(verr)(status, f, ap);
	__builtin_unreachable();
}

void errx(int status, const char *f, ...)
{
	va_list ap;

	enter("errx");
	va_start(ap, f);
	GET(verrx)(status, f, ap);
	__builtin_unreachable();
}

/* The end of error() and error_at_line() (glibc's misc/error.c). */
static void error_tail(int status, int errnum, const char *f, va_list ap)
{
	vfprintf(stderr, f, ap);
	error_message_count++;
	if (errnum)
		fprintf(stderr, ": %s", strerror(errnum));
	putc('\n', stderr);
	fflush(stderr);
	if (status)
		exit(status);
}

void error(int status, int errnum, const char *f, ...)
{
	va_list ap;

	enter("error");
	fflush(stdout);
	if (error_print_progname)
		error_print_progname();
	else
		fprintf(stderr, "%s: ", program_invocation_name);
	va_start(ap, f);
	error_tail(status, errnum, f, ap);
	va_end(ap);
	leave();
}

void error_at_line(int status, int errnum, const char *file, unsigned int line,
		   const char *f, ...)
{
	static const char *old_file;
	static unsigned int old_line;
	va_list ap;

	enter("error_at_line");
	if (error_one_per_line) {
		if (old_line == line && (file == old_file || (old_file && file &&
					 strcmp(old_file, file) == 0))) {
			leave();
			return;
		}
		old_file = file;
		old_line = line;
	}
	fflush(stdout);
	if (error_print_progname)
		error_print_progname();
	else
		fprintf(stderr, "%s:", program_invocation_name);
	fprintf(stderr, file ? "%s:%u: " : " ", file, line);
	va_start(ap, f);
	error_tail(status, errnum, f, ap);
	va_end(ap);
	leave();
}

/*
 * leaving the process: exit() runs atexit handlers and flushes stdio;
 * atexit() itself is linked into the program and calls __cxa_atexit()
 */
REAL(exit);
void exit(int status)
{
	enter("exit");
	GET(exit)(status);
	__builtin_unreachable();
}
WRAP(int, on_exit, (void (*fn)(int, void *), void *arg), (fn, arg))
extern int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);
WRAP_AS(int, __cxa_atexit, "atexit", (void (*fn)(void *), void *arg, void *dso),
	(fn, arg, dso))
WRAP(int, system, (const char *c), (c))

/* messages, time, sleeping, locks */
WRAP(char *, strerror, (int e), (e))
WRAP(char *, strsignal, (int s), (s))
WRAP_VOID(psignal, (int s, const char *m), (s, m))
WRAP_VOID(psiginfo, (const siginfo_t *i, const char *m), (i, m))
WRAP_VOID(vsyslog, (int pri, const char *f, va_list ap), (pri, f, ap))
void syslog(int pri, const char *f, ...)
{
	va_list ap;

	enter("syslog");
	va_start(ap, f);
	GET(vsyslog)(pri, f, ap);
	va_end(ap);
	leave();
}
WRAP(struct tm *, localtime, (const time_t *t), (t))
WRAP(struct tm *, localtime_r, (const time_t *t, struct tm *tm), (t, tm))
WRAP(struct tm *, gmtime, (const time_t *t), (t))
WRAP(char *, ctime, (const time_t *t), (t))
WRAP(char *, asctime, (const struct tm *tm), (tm))
WRAP(time_t, mktime, (struct tm *tm), (tm))
WRAP(size_t, strftime, (char *s, size_t n, const char *f, const struct tm *tm),
     (s, n, f, tm))
WRAP(int, usleep, (useconds_t us), (us))
WRAP(int, pthread_mutex_lock, (pthread_mutex_t *m), (m))

/*
 * glibc's other names for wrapped functions (_IO_puts is puts, __libc_malloc
 * is malloc): a handler that calls them is reported under the usual name.
 */
extern int _IO_printf(const char *, ...);
extern int _IO_fprintf(FILE *, const char *, ...);
extern int _IO_sprintf(char *, const char *, ...);
extern int _IO_vfprintf(FILE *, const char *, va_list);
extern int _IO_puts(const char *);
extern int _IO_fputs(const char *, FILE *);
extern size_t _IO_fwrite(const void *, size_t, size_t, FILE *);
extern int _IO_fflush(FILE *);
extern FILE *_IO_fopen(const char *, const char *);
extern FILE *_IO_fdopen(int, const char *);
extern int _IO_fclose(FILE *);
extern char *_IO_fgets(char *, int, FILE *);
extern size_t _IO_fread(void *, size_t, size_t, FILE *);
extern FILE *_IO_popen(const char *, const char *);
extern int _IO_setvbuf(FILE *, char *, int, size_t);
extern int __asprintf(char **, const char *, ...);
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
WRAP_FMT(_IO_printf, "printf", vprintf, (const char *f, ...), f, f)
WRAP_FMT(_IO_fprintf, "fprintf", vfprintf, (FILE *fp, const char *f, ...), f, fp, f)
WRAP_FMT(_IO_sprintf, "sprintf", vsprintf, (char *s, const char *f, ...), f, s, f)
WRAP_FMT(__asprintf, "asprintf", vasprintf, (char **s, const char *f, ...), f, s, f)
WRAP_AS(int, _IO_vfprintf, "vfprintf", (FILE *fp, const char *f, va_list ap),
	(fp, f, ap))
WRAP_AS(int, _IO_puts, "puts", (const char *s), (s))
WRAP_AS(int, _IO_fputs, "fputs", (const char *s, FILE *fp), (s, fp))
WRAP_AS(size_t, _IO_fwrite, "fwrite",
	(const void *b, size_t n, size_t m, FILE *fp), (b, n, m, fp))
WRAP_AS(int, _IO_fflush, "fflush", (FILE *fp), (fp))
WRAP_AS(FILE *, _IO_fopen, "fopen", (const char *p, const char *m), (p, m))
WRAP_AS(FILE *, _IO_fdopen, "fdopen", (int fd, const char *m), (fd, m))
WRAP_AS(int, _IO_fclose, "fclose", (FILE *fp), (fp))
WRAP_AS(char *, _IO_fgets, "fgets", (char *s, int n, FILE *fp), (s, n, fp))
WRAP_AS(size_t, _IO_fread, "fread", (void *b, size_t n, size_t m, FILE *fp),
	(b, n, m, fp))
WRAP_AS(FILE *, _IO_popen, "popen", (const char *c, const char *m), (c, m))
WRAP_AS(int, _IO_setvbuf, "setvbuf", (FILE *fp, char *b, int mode, size_t n),
	(fp, b, mode, n))
WRAP_AS(void *, __libc_malloc, "malloc", (size_t n), (n))
WRAP_AS(void *, __libc_calloc, "calloc", (size_t n, size_t s), (n, s))
WRAP_AS(void *, __libc_realloc, "realloc", (void *p, size_t n), (p, n))
WRAP_AS(void *, __libc_memalign, "memalign", (size_t a, size_t n), (a, n))
REAL(__libc_free);
void __libc_free(void *p)
{
	enter("free");
	GET(__libc_free)(p);
	leave();
}

/*
 * dlsym() and dlvsym(): a program that looks up a function this library
 * wraps (on libc's handle, with RTLD_NEXT, or by version) gets the wrapper,
 * not the function behind it, so that a handler cannot call printf()
 * around the checker that way.  RTLD_NEXT means "after the caller" (glibc
 * looks at the return address): those lookups are passed on by a tail call,
 * which keeps the caller's (the program's finds this library's wrappers
 * anyway; AddressSanitizer's must find what comes after it).
 */
static void *ours(const char *name, void *found)
{
	static Dl_info self;
	Dl_info info;
	void *mine;

	if (!found || !name)
		return found;
	if (!self.dli_fbase && !dladdr((void *)ours, &self))
		return found;
	mine = real_dlsym(RTLD_DEFAULT, name);
	if (mine && mine != found && dladdr(mine, &info) &&
	    info.dli_fbase == self.dli_fbase)
		return mine;
	return found;
}

void *dlsym(void *handle, const char *name)
{
	find_dlsym();
	if (!real_dlsym)
		return NULL;
	if (handle == RTLD_NEXT)	/* a tail call: "next" after the caller */
		return real_dlsym(handle, name);
	return ours(name, real_dlsym(handle, name));
}

void *dlvsym(void *handle, const char *name, const char *version)
{
	find_dlsym();
	if (!real_dlvsym)
		return NULL;
	if (handle == RTLD_NEXT)
		return real_dlvsym(handle, name, version);
	return ours(name, real_dlvsym(handle, name, version));
}

/* ---- start-up ----------------------------------------------------------------------- */

/*
 * In the lab VM the grader (grader/guest/runas.c -s) passes the log as the
 * write end of a pipe on descriptor SIGSAFE_FD, read by a process of root's:
 * the program cannot empty or rewrite what was written, and closing it, or
 * an exec (the descriptor is close-on-exec from here on), is seen by that
 * reader.  The descriptor is moved out of the way, and LD_PRELOAD is taken
 * out of the environment (and its text out of /proc/self/environ), so that
 * the program's run looks like the student's own as far as is cheap to
 * see: /proc/self/maps still shows the library.
 */
#define SIGSAFE_FD	255

extern char **environ;

static void hide_preload(void)
{
	char **e, **out;

	for (e = out = environ; e && *e; e++) {
		if (strncmp(*e, "LD_PRELOAD=", 11) == 0) {
			memset(*e, 0, strlen(*e));
			continue;
		}
		*out++ = *e;
	}
	if (out)
		*out = NULL;
}

static void take_grader_log(void)
{
	static const char started[] = "sigsafe-log: started\n";
	struct stat st;
	int fd;

	if (fstat(SIGSAFE_FD, &st) < 0 || !S_ISFIFO(st.st_mode) ||
	    (fcntl(SIGSAFE_FD, F_GETFL) & O_ACCMODE) != O_WRONLY)
		return;
	fd = fcntl(SIGSAFE_FD, F_DUPFD_CLOEXEC, 700);
	if (fd < 0)
		fd = fcntl(SIGSAFE_FD, F_DUPFD_CLOEXEC, 3);
	if (fd < 0)
		return;
	close(SIGSAFE_FD);
	logfd = fd;
	log_line(started, sizeof(started) - 1);
	hide_preload();
}

static __attribute__((constructor)) void sigsafe_init(void)
{
	const char *p = getenv("SIGSAFE_LOG");
	const unsigned char *rnd = (const void *)getauxval(AT_RANDOM);

	if (rnd)
		memcpy(&secret, rnd, sizeof(secret));
	secret |= 1;
	alloc_ready();
	GET(sigaction);
	if (p && *p && strlen(p) < sizeof(logpath))
		memcpy(logpath, p, strlen(p) + 1);
	else
		take_grader_log();
}
