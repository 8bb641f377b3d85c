/*
 * Which route a request takes: the seldon-model header, else the model or
 * pipeline named by a REST path. The derivation matches Seldon Core 2's
 * Envoy filter: any path under /v2/models/<m>/ or /v2/pipelines/<p>/,
 * whatever follows and whatever the method (the upstream judges those).
 */
#include <string.h>

#include "router/router.h"

static int starts(const char *p, size_t len, const char *prefix, size_t *after)
{
    size_t n = strlen(prefix);
    if (len < n || memcmp(p, prefix, n) != 0)
        return 0;
    *after = n;
    return 1;
}

static int emit(char *out, size_t *out_len, size_t cap, const char *a, size_t alen,
                const char *suffix)
{
    size_t slen = suffix ? strlen(suffix) : 0;
    if (alen + slen > SELDON_ROUTES_NAME_MAX || alen + slen + 1 > cap)
        return sdn_error(
            SELDON_ETOOBIG, "model name longer than %d bytes",
            (int)(cap - 1 < SELDON_ROUTES_NAME_MAX ? cap - 1 : SELDON_ROUTES_NAME_MAX));
    memcpy(out, a, alen);
    if (slen)
        memcpy(out + alen, suffix, slen);
    out[alen + slen] = '\0';
    *out_len = alen + slen;
    return 0;
}

int seldon_router_route_name(char *out, size_t *out_len, size_t cap, int32_t protocol,
                             const char *header, size_t header_len, const char *path,
                             size_t path_len)
{
    size_t i, start, end;
    const char *suffix = NULL;
    char q[280];
    if (out == NULL || out_len == NULL || cap == 0 || (path == NULL && path_len > 0))
        return sdn_error(SELDON_EINVAL, "router_route_name: NULL argument");
    *out_len = 0;
    out[0] = '\0';
    if (header != NULL) {
        /* Header values arrive with optional surrounding whitespace. */
        while (header_len > 0 && (header[0] == ' ' || header[0] == '\t')) {
            header++;
            header_len--;
        }
        while (header_len > 0 && (header[header_len - 1] == ' ' || header[header_len - 1] == '\t'))
            header_len--;
        if (header_len == 0)
            return sdn_error(SELDON_EINVAL, "the seldon-model header is empty");
        return emit(out, out_len, cap, header, header_len, NULL);
    }
    if (protocol == SELDON_ROUTER_GRPC)
        return sdn_error(SELDON_EINVAL,
                         "a gRPC call needs the seldon-model metadata naming the model "
                         "(or <pipeline>.pipeline)");
    if (protocol != SELDON_ROUTER_HTTP)
        return sdn_error(SELDON_EINVAL, "router_route_name: unknown protocol %d", (int)protocol);
    if (path == NULL)
        path = "";
    /* The query string is not part of the path. */
    for (i = 0; i < path_len; i++)
        if (path[i] == '?' || path[i] == '#') {
            path_len = i;
            break;
        }
    if (starts(path, path_len, "/v2/models/", &start)) {
        suffix = NULL;
    } else if (starts(path, path_len, "/v2/pipelines/", &start)) {
        suffix = SELDON_ROUTER_PIPELINE_SUFFIX;
    } else {
        sdn_rt_quote(q, sizeof(q), path, path_len);
        return sdn_error(SELDON_ENOTFOUND,
                         "no seldon-model header, and the path \"%s\" names no model or pipeline",
                         q);
    }
    for (end = start; end < path_len && path[end] != '/'; end++)
        ;
    if (end == start) {
        sdn_rt_quote(q, sizeof(q), path, path_len);
        return sdn_error(SELDON_ENOTFOUND,
                         "no seldon-model header, and the path \"%s\" names no model or pipeline",
                         q);
    }
    return emit(out, out_len, cap, path + start, end - start, suffix);
}

void seldon_router_status(int32_t *out_http, int32_t *out_grpc, int32_t code)
{
    int32_t http, grpc;
    switch (code) {
    case SELDON_OK:
        http = 200;
        grpc = 0;
        break;
    case SELDON_ENOTFOUND:
        http = 404;
        grpc = 5; /* NOT_FOUND */
        break;
    case SELDON_EINVAL:
    case SELDON_EPARSE:
        http = 400;
        grpc = 3; /* INVALID_ARGUMENT */
        break;
    case SELDON_ETOOBIG:
        http = 431;
        grpc = 3;
        break;
    case SELDON_EUNAVAIL:
        http = 503;
        grpc = 14; /* UNAVAILABLE */
        break;
    case SELDON_ETIMEDOUT:
        http = 504;
        grpc = 4; /* DEADLINE_EXCEEDED */
        break;
    default:
        http = 500;
        grpc = 13; /* INTERNAL */
        break;
    }
    if (out_http != NULL)
        *out_http = http;
    if (out_grpc != NULL)
        *out_grpc = grpc;
}
