/*
 * The daemons' flag tables (see flags.h).
 */
#include "flags.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "sdd.h"
#include "seldon/manifest.h"

#define SDF_MAX 64 /* flags in one table; a daemon has about twenty */

/* getopt_long's value for table entry i; --help and --version follow the table. */
#define SDF_VAL(i) (256 + (int)(i))

/* A whole number in [lo, hi] into the kind's type. */
static int set_number(const sdf_flag *f, const char *value)
{
    long v;
    if (sdd_parse_long(value, f->lo, f->hi, &v) < 0)
        return -1;
    switch (f->kind) {
    case SDF_INT:
        *(int *)f->dest = (int)v;
        break;
    case SDF_LONG:
        *(long *)f->dest = v;
        break;
    case SDF_U32:
        *(uint32_t *)f->dest = (uint32_t)v;
        break;
    case SDF_MS:
        *(uint64_t *)f->dest = (uint64_t)v;
        break;
    default: /* SDF_SIZE */
        *(size_t *)f->dest = (size_t)v;
        break;
    }
    return 0;
}

static int set_value(const sdf_flag *f, const char *value)
{
    size_t len = strlen(value);
    int64_t q;
    int32_t level;
    switch (f->kind) {
    case SDF_INT:
    case SDF_LONG:
    case SDF_U32:
    case SDF_MS:
    case SDF_SIZE:
        return set_number(f, value);
    case SDF_QTY:
        if (seldon_parse_quantity(&q, value, len) != 0 || q < f->lo)
            return -1;
        *(int64_t *)f->dest = q;
        return 0;
    case SDF_STR:
        if (len < (size_t)f->lo || (f->hi > 0 && len > (size_t)f->hi))
            return -1;
        *(const char **)f->dest = value;
        return 0;
    case SDF_SET:
        *(int *)f->dest = (int)f->lo;
        return 0;
    case SDF_LOG:
        level = sdd_log_level_parse(value);
        if (level < 0)
            return -1;
        *(int32_t *)f->dest = level;
        return 0;
    case SDF_FUNC:
        return f->parse(f->dest, value);
    default:
        return -1;
    }
}

/* What a good value is, for the bad-value message. */
static void expectation(char *out, size_t cap, const sdf_flag *f)
{
    switch (f->kind) {
    case SDF_INT:
    case SDF_LONG:
    case SDF_U32:
        snprintf(out, cap, "an integer from %ld to %ld", f->lo, f->hi);
        break;
    case SDF_MS:
        snprintf(out, cap, "milliseconds from %ld to %ld", f->lo, f->hi);
        break;
    case SDF_SIZE:
        snprintf(out, cap, "bytes from %ld to %ld", f->lo, f->hi);
        break;
    case SDF_QTY:
        snprintf(out, cap, "a memory quantity%s, such as 1073741824, 512Mi or 2Gi",
                 f->lo > 0 ? " above 0" : "");
        break;
    case SDF_STR:
        if (f->hi > 0)
            snprintf(out, cap, "%s%ld characters at most", f->lo > 0 ? "not empty, " : "", f->hi);
        else
            snprintf(out, cap, "not empty");
        break;
    case SDF_LOG:
        snprintf(out, cap, "error, warn, info, debug or trace");
        break;
    default:
        snprintf(out, cap, "%s", f->expect != NULL ? f->expect : "see --help");
        break;
    }
}

static void entry(FILE *out, int column, const char *head, const char *help)
{
    int len = fprintf(out, "  %s", head);
    const char *nl;
    if (len + 1 > column) {
        fputc('\n', out);
        len = 0;
    }
    fprintf(out, "%*s", column - len, "");
    while ((nl = strchr(help, '\n')) != NULL) {
        fprintf(out, "%.*s\n%*s", (int)(nl - help), help, column, "");
        help = nl + 1;
    }
    fprintf(out, "%s\n", help);
}

void sdf_usage(FILE *f, const sdf_program *p, const sdf_flag *flags, size_t n)
{
    char head[128];
    size_t i;
    fputs(p->synopsis, f);
    fputc('\n', f);
    for (i = 0; i < n; i++) {
        const sdf_flag *fl = &flags[i];
        if (fl->help == NULL)
            continue;
        if (fl->shortopt != 0)
            snprintf(head, sizeof(head), "-%c, --%s%s%s", fl->shortopt, fl->name,
                     *fl->arg ? " " : "", fl->arg);
        else
            snprintf(head, sizeof(head), "--%s%s%s", fl->name, *fl->arg ? " " : "", fl->arg);
        entry(f, p->column, head, fl->help);
    }
    fputs("  --help, --version\n", f);
    if (p->epilogue != NULL) {
        fputc('\n', f);
        fputs(p->epilogue, f);
    }
}

int sdf_parse(const sdf_program *p, const sdf_flag *flags, size_t n, int argc, char **argv)
{
    struct option opts[SDF_MAX + 3];
    char shorts[2 * SDF_MAX + 2], expected[160], shown[1024];
    size_t i, ns = 0;
    int o;
    if (n > SDF_MAX) {
        fprintf(stderr, "%s: too many flags\n", p->name);
        return -1;
    }
    for (i = 0; i < n; i++) {
        opts[i].name = flags[i].name;
        opts[i].has_arg = flags[i].kind == SDF_SET ? no_argument : required_argument;
        opts[i].flag = NULL;
        opts[i].val = SDF_VAL(i);
        if (flags[i].shortopt != 0) {
            shorts[ns++] = (char)flags[i].shortopt;
            if (flags[i].kind != SDF_SET)
                shorts[ns++] = ':';
        }
    }
    opts[n] = (struct option){"help", no_argument, NULL, SDF_VAL(n)};
    opts[n + 1] = (struct option){"version", no_argument, NULL, SDF_VAL(n + 1)};
    opts[n + 2] = (struct option){NULL, 0, NULL, 0};
    shorts[ns++] = 'h';
    shorts[ns] = '\0';
    while ((o = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        const sdf_flag *f = NULL;
        if (o == 'h' || o == SDF_VAL(n)) {
            sdf_usage(stdout, p, flags, n);
            exit(0);
        }
        if (o == SDF_VAL(n + 1)) {
            printf("%s %s\n", p->name, seldon_version());
            exit(0);
        }
        if (o >= SDF_VAL(0) && o < SDF_VAL(n))
            f = &flags[o - SDF_VAL(0)];
        for (i = 0; f == NULL && i < n; i++)
            if (flags[i].shortopt != 0 && flags[i].shortopt == o)
                f = &flags[i];
        if (f == NULL) { /* getopt said why */
            sdf_usage(stderr, p, flags, n);
            return -1;
        }
        /* As given: an SDF_FUNC parser may split the value in place. */
        snprintf(shown, sizeof(shown), "%s", f->kind == SDF_SET ? "" : optarg);
        if (set_value(f, f->kind == SDF_SET ? "" : optarg) != 0) {
            expectation(expected, sizeof(expected), f);
            fprintf(stderr, "%s: --%s: bad value '%s' (expected %s)\n", p->name, f->name, shown,
                    expected);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", p->name, argv[optind]);
        return -1;
    }
    return 0;
}

void sdf_signals_block(sigset_t *sigs, int hup)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    if (hup)
        sigaddset(sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int sdf_signals_wait(const sigset_t *sigs)
{
    int sig = 0;
    while (sigwait(sigs, &sig) != 0)
        ;
    return sig;
}

const char *sdf_signal_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : "SIGINT";
}

int sdf_metrics_listen(sdh_server **out, int *bound, uv_loop_t *loop, const char *host, int port,
                       sdh_handler_fn handler, void *user_data)
{
    sdh_config hc;
    int rc;
    *bound = -1;
    if (port < 0)
        return 0;
    memset(&hc, 0, sizeof(hc));
    hc.host = host;
    hc.port = port;
    hc.max_body = 4096;
    hc.idle_timeout_ms = 60000;
    hc.handler = handler;
    hc.user_data = user_data;
    rc = sdh_server_new(out, &hc);
    if (rc == 0)
        rc = sdh_server_listen(*out, loop);
    if (rc == 0)
        *bound = sdh_server_port(*out);
    return rc;
}

void sdf_metrics_respond(sdh_req *req, const sdh_request *request, seldon_metrics *m)
{
    static const sdh_header ctype = {"content-type", 12, "text/plain; version=0.0.4", 25};
    seldon_buf b = SELDON_BUF_INIT;
    if (request->path_len == 8 && memcmp(request->path, "/metrics", 8) == 0) {
        if (seldon_metrics_render(&b, m) != 0) {
            seldon_buf_free(&b);
            sdh_respond_error(req, 500, seldon_last_error());
            return;
        }
        sdh_respond(req, 200, &ctype, 1, &b);
        return;
    }
    if ((request->path_len == 6 && memcmp(request->path, "/ready", 6) == 0) ||
        (request->path_len == 5 && memcmp(request->path, "/live", 5) == 0)) {
        sdh_respond(req, 200, NULL, 0, NULL);
        return;
    }
    sdh_respond_error(req, 404, "not found: the metrics port serves /metrics");
}

void sdf_countdown_add(sdf_countdown *c, int n)
{
    pthread_mutex_lock(&c->mu);
    c->left += n;
    pthread_mutex_unlock(&c->mu);
}

void sdf_countdown_done(sdf_countdown *c)
{
    pthread_mutex_lock(&c->mu);
    c->left--;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void sdf_countdown_wait(sdf_countdown *c, uint64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->left > 0)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &until) != 0)
            break;
    pthread_mutex_unlock(&c->mu);
}
