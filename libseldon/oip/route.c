/*
 * The protocol's REST paths. Shared by every daemon that serves or routes
 * them, so that a path means the same thing to the server and the router.
 */
#include <string.h>

#include "msg.h"
#include "util/jsonstr.h"

typedef struct seg {
    const char *p;
    size_t len;
} seg;

#define ROUTE_MAX_SEGS 8

static int is(const seg *s, const char *word)
{
    size_t n = strlen(word);
    return s->len == n && memcmp(s->p, word, n) == 0;
}

static size_t split(seg *segs, const char *path, size_t len)
{
    size_t n = 0, i = 0;
    while (i < len) {
        size_t start;
        while (i < len && path[i] == '/')
            i++;
        if (i >= len)
            break;
        start = i;
        while (i < len && path[i] != '/')
            i++;
        if (n == ROUTE_MAX_SEGS)
            return ROUTE_MAX_SEGS + 1;
        segs[n].p = path + start;
        segs[n].len = i - start;
        n++;
    }
    return n;
}

static int method_is(const char *m, size_t len, const char *want)
{
    size_t n = strlen(want);
    /* HEAD reads what GET reads. */
    if (len == 4 && memcmp(m, "HEAD", 4) == 0 && strcmp(want, "GET") == 0)
        return 1;
    return len == n && memcmp(m, want, n) == 0;
}

/*
 * Names and versions in a path are refused as the gRPC codec refuses them in
 * its string fields: UTF-8 only, no NUL, and the same message shape
 * ("model_name: at byte 0: invalid UTF-8").
 */
static int check_text(const char *p, size_t len, const char *field)
{
    size_t i = 0;
    while (i < len) {
        const uint8_t *u = (const uint8_t *)p + i;
        size_t n;
        if (*u == 0)
            return sdn_error(SELDON_EPARSE,
                             "%s: at byte %zu: a NUL byte is not allowed in this string", field, i);
        if (*u < 0x80) {
            i++;
            continue;
        }
        n = sdn_utf8_seq(u, (const uint8_t *)p + len);
        if (n == 0)
            return sdn_error(SELDON_EPARSE, "%s: at byte %zu: invalid UTF-8", field, i);
        i += n;
    }
    return 0;
}

static int done(seldon_route *out, int32_t kind, const char *method, size_t method_len,
                const char *want)
{
    int rc;
    if (out->name != NULL &&
        (rc = check_text(out->name, out->name_len,
                         kind == SELDON_ROUTE_PIPELINE_READY || kind == SELDON_ROUTE_PIPELINE_INFER
                             ? "pipeline_name"
                             : "model_name")) < 0)
        return rc;
    if (out->version != NULL &&
        (rc = check_text(out->version, out->version_len, "model_version")) < 0)
        return rc;
    out->kind = kind;
    if (!method_is(method, method_len, want))
        return sdn_error(SELDON_EUNSUPPORTED, "method %.*s not allowed; use %s",
                         (int)(method_len > 16 ? 16 : method_len), method, want);
    return 0;
}

int seldon_route_parse(seldon_route *out, const char *method, size_t method_len, const char *path,
                       size_t path_len)
{
    seg s[ROUTE_MAX_SEGS];
    size_t n;
    if (out == NULL || method == NULL || path == NULL)
        return sdn_error(SELDON_EINVAL, "route_parse: NULL argument");
    memset(out, 0, sizeof(*out));
    n = split(s, path, path_len);
    if (n == 0 || n > ROUTE_MAX_SEGS || path_len == 0 || path[0] != '/' || !is(&s[0], "v2"))
        goto unknown;
    if (n == 1)
        return done(out, SELDON_ROUTE_SERVER_METADATA, method, method_len, "GET");
    if (is(&s[1], "health") && n == 3) {
        if (is(&s[2], "live"))
            return done(out, SELDON_ROUTE_HEALTH_LIVE, method, method_len, "GET");
        if (is(&s[2], "ready"))
            return done(out, SELDON_ROUTE_HEALTH_READY, method, method_len, "GET");
        goto unknown;
    }
    if (is(&s[1], "models") && n >= 3) {
        size_t rest = 3;
        out->name = s[2].p;
        out->name_len = s[2].len;
        if (n >= 5 && is(&s[3], "versions")) {
            out->version = s[4].p;
            out->version_len = s[4].len;
            rest = 5;
        }
        if (n == rest)
            return done(out, SELDON_ROUTE_MODEL_METADATA, method, method_len, "GET");
        if (n == rest + 1 && is(&s[rest], "ready"))
            return done(out, SELDON_ROUTE_MODEL_READY, method, method_len, "GET");
        if (n == rest + 1 && is(&s[rest], "infer"))
            return done(out, SELDON_ROUTE_MODEL_INFER, method, method_len, "POST");
        goto unknown;
    }
    if (is(&s[1], "pipelines") && n == 4) {
        out->name = s[2].p;
        out->name_len = s[2].len;
        if (is(&s[3], "ready"))
            return done(out, SELDON_ROUTE_PIPELINE_READY, method, method_len, "GET");
        if (is(&s[3], "infer"))
            return done(out, SELDON_ROUTE_PIPELINE_INFER, method, method_len, "POST");
        goto unknown;
    }
    if (is(&s[1], "repository")) {
        if (n == 3 && is(&s[2], "index"))
            return done(out, SELDON_ROUTE_REPO_INDEX, method, method_len, "POST");
        if (n == 5 && is(&s[2], "models")) {
            out->name = s[3].p;
            out->name_len = s[3].len;
            if (is(&s[4], "load"))
                return done(out, SELDON_ROUTE_REPO_LOAD, method, method_len, "POST");
            if (is(&s[4], "unload"))
                return done(out, SELDON_ROUTE_REPO_UNLOAD, method, method_len, "POST");
        }
    }
unknown:
    memset(out, 0, sizeof(*out));
    return sdn_error(SELDON_ENOTFOUND, "no such endpoint: %.*s", (int)(path_len > 200 ? 200 : path_len),
                     path);
}
