/*
 * Command-line flags of the daemon mains, from one table per daemon: the same
 * table parses argv and prints --help, so the two cannot disagree. Every daemon
 * gets --help (and -h) and --version, the same "bad value" and "unexpected
 * argument" messages, and the same exit paths.
 *
 * Also the part of a main's skeleton that every daemon repeats: signals taken
 * synchronously by the main thread, and the /metrics listener.
 *
 * Thread safety: call from the main thread, at start-up (sdf_parse, sdf_usage,
 * sdf_signals_block) and at its end (sdf_signals_wait).
 */
#ifndef SDF_FLAGS_H
#define SDF_FLAGS_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "http_server.h"
#include "seldon/metrics.h"

/* What a flag's value is, and the type of what its dest points to. */
enum {
    SDF_INT = 1, /* int: a whole number in [lo, hi] */
    SDF_LONG,    /* long: a whole number in [lo, hi] */
    SDF_U32,     /* uint32_t: a whole number in [lo, hi] (lo >= 0) */
    SDF_MS,      /* uint64_t: milliseconds in [lo, hi] (lo >= 0) */
    SDF_SIZE,    /* size_t: bytes in [lo, hi] (lo >= 0) */
    SDF_QTY,     /* int64_t: a memory quantity (seldon_parse_quantity: 512Mi, 2Gi...) >= lo */
    SDF_STR,     /* const char *: argv's own string; at least lo characters, at most hi
                    unless hi is 0 */
    SDF_SET,     /* int: takes no value; sets *dest = lo */
    SDF_LOG,     /* int32_t: a log level (error, warn, info, debug, trace) */
    SDF_FUNC     /* anything: parse(dest, value) returns 0, or -1 for a bad value */
};

typedef struct sdf_flag {
    const char *name; /* the long name, without "--" */
    int shortopt;     /* a one-letter alias ('f' for -f), or 0 */
    int kind;         /* SDF_* */
    void *dest;       /* borrowed; written when the flag is given (and valid) */
    long lo, hi;      /* bounds, see the kinds */
    const char *arg;  /* the value's name in --help ("N", "DIR"); "" for none */
    /* The description in --help; '\n' starts a line indented to the column. NULL: the
       flag is left out of --help (an alias or the other half of a pair named elsewhere). */
    const char *help;
    int (*parse)(void *dest, const char *value); /* SDF_FUNC only */
    const char *expect; /* what a good value is, in the bad-value message (SDF_FUNC) */
} sdf_flag;

/* A table row: a flag with bounds (help NULL: left out of --help). */
#define SDF_FLAG(name, kind, dest, lo, hi, arg, help)                                              \
    {                                                                                              \
        (name), 0, (kind), (dest), (lo), (hi), (arg), (help), NULL, NULL                           \
    }
/* A table row for SDF_FUNC: parse(dest, value) checks and stores; expect says what is good. */
#define SDF_CHECK(name, dest, parse, expect, arg, help)                                            \
    {                                                                                              \
        (name), 0, SDF_FUNC, (dest), 0, 0, (arg), (help), (parse), (expect)                        \
    }

typedef struct sdf_program {
    const char *name;     /* "seldon-agent": messages, --version */
    const char *synopsis; /* --help text before the flags ("usage: ...\n\n..."), ends in \n */
    const char *epilogue; /* --help text after them, or NULL */
    int column;           /* where descriptions start in --help */
} sdf_program;

/*
 * Parses argv against the table (flags[0..n)). --help and -h print sdf_usage() on
 * stdout and exit 0; --version prints "<name> <version>" and exits 0. An unknown
 * flag gets getopt's message and the usage on stderr. A bad value is reported as
 * "<name>: --flag: bad value 'v' (expected ...)", and a positional argument as
 * "<name>: unexpected argument 'a'", on stderr. Returns 0, or -1 after any of these
 * messages (mains exit 2).
 */
int sdf_parse(const sdf_program *p, const sdf_flag *flags, size_t n, int argc, char **argv);

/* Prints the synopsis, one entry per flag (then --help, --version) and the epilogue. */
void sdf_usage(FILE *f, const sdf_program *p, const sdf_flag *flags, size_t n);

/*
 * Blocks SIGTERM and SIGINT (and SIGHUP when hup is set) in the calling thread,
 * so that every thread started later inherits the mask and only sdf_signals_wait()
 * takes them, and ignores SIGPIPE. Call before the first thread starts.
 */
void sdf_signals_block(sigset_t *sigs, int hup);

/* Waits for one of sigs; returns it. */
int sdf_signals_wait(const sigset_t *sigs);

/*
 * The /metrics listener every daemon has beside its service: a small HTTP/1.1
 * server (4 KiB bodies, 60 s idle) on host:port, on loop, answered by handler.
 * A port below 0 means none: *out stays NULL and *bound is -1. Else *bound is the
 * port bound (port 0 picks one). Returns 0, or a negative SELDON_E* (detail in
 * seldon_last_error()); *out is the caller's either way (sdh_server_free(); NULL ok).
 */
int sdf_metrics_listen(sdh_server **out, int *bound, uv_loop_t *loop, const char *host, int port,
                       sdh_handler_fn handler, void *user_data);

/*
 * The /metrics port's answers: /metrics renders m (500 if it cannot), /ready and
 * /live are 200, anything else 404. For daemons whose readiness is their liveness.
 */
void sdf_metrics_respond(sdh_req *req, const sdh_request *request, seldon_metrics *m);

/*
 * What the main thread waits for at shutdown, within the grace: loops count down as
 * their h2c servers finish draining. Any thread may call add and done.
 */
typedef struct sdf_countdown {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int left;
} sdf_countdown;

#define SDF_COUNTDOWN_INIT                                                                         \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0                                     \
    }

void sdf_countdown_add(sdf_countdown *c, int n);
void sdf_countdown_done(sdf_countdown *c);
/* Returns once the count is back to 0, or after ms. */
void sdf_countdown_wait(sdf_countdown *c, uint64_t ms);

/* "SIGTERM" for SIGTERM, else "SIGINT" (what the mains log on the way out). */
const char *sdf_signal_name(int sig);

#endif
