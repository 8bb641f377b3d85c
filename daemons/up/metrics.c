/*
 * /metrics on the metrics port (served on the control loop, where the
 * scheduler may be read): the ingress's own families, the scheduler's, then every
 * replica's service families merged into one group per family (Prometheus
 * wants each family's samples together), each sample labelled with the
 * replica it comes from: server="<name>", server_replica="<i>".
 */
#include <stdio.h>
#include <string.h>

#include "sdd.h"
#include "up.h"

/* The blocks of a rendered registry: each starts at a "# HELP" line. */
typedef struct block {
    const char *head; /* "# HELP" and "# TYPE" lines */
    size_t head_len;
    const char *body; /* samples */
    size_t body_len;
} block;

#define MAX_BLOCKS 64

static size_t split(block *out, size_t cap, const char *p, size_t len)
{
    size_t n = 0, i = 0;
    while (i < len && n < cap) {
        size_t start = i;
        /* header lines */
        while (i < len && p[i] == '#') {
            const char *nl = memchr(p + i, '\n', len - i);
            i = nl ? (size_t)(nl - p) + 1 : len;
        }
        out[n].head = p + start;
        out[n].head_len = i - start;
        start = i;
        while (i < len && p[i] != '#') {
            const char *nl = memchr(p + i, '\n', len - i);
            i = nl ? (size_t)(nl - p) + 1 : len;
        }
        out[n].body = p + start;
        out[n].body_len = i - start;
        n++;
    }
    return n;
}

static int append(seldon_buf *b, const void *p, size_t n)
{
    if (seldon_buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* Appends the samples of body, each with the replica's labels first. */
static int labelled(seldon_buf *b, const char *body, size_t len, const char *labels)
{
    size_t i = 0, ll = strlen(labels);
    while (i < len) {
        const char *line = body + i, *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) + 1 : len - i, k = 0;
        while (k < n && line[k] != '{' && line[k] != ' ')
            k++;
        if (append(b, line, k) != 0 || append(b, "{", 1) != 0 || append(b, labels, ll) != 0)
            return -1;
        if (k < n && line[k] == '{') {
            if (line[k + 1] != '}' && append(b, ",", 1) != 0)
                return -1;
            if (append(b, line + k + 1, n - k - 1) != 0)
                return -1;
        } else if (append(b, "}", 1) != 0 || append(b, line + k, n - k) != 0) {
            return -1;
        }
        i += n;
    }
    return 0;
}

static int render(seldon_buf *out, up *u)
{
    seldon_buf parts[UP_MAX_SERVERS];
    block blocks[UP_MAX_SERVERS][MAX_BLOCKS];
    size_t nblocks[UP_MAX_SERVERS];
    char labels[UP_MAX_SERVERS][200];
    int i, rc = seldon_metrics_render(out, u->metrics);
    size_t k;
    if (rc == 0)
        rc = sc_metrics_render(out, &u->sched); /* the scheduler's, refreshed on its loop */
    memset(parts, 0, sizeof(parts));
    for (i = 0; rc == 0 && i < u->nreplicas; i++) {
        rc = seldon_metrics_render(&parts[i], u->replicas[i].s.metrics);
        nblocks[i] = split(blocks[i], MAX_BLOCKS, (const char *)parts[i].data, parts[i].len);
        snprintf(labels[i], sizeof(labels[i]), "server=\"%s\",server_replica=\"%d\"",
                 u->cfg.server_name, i);
    }
    for (k = 0; rc == 0 && u->nreplicas > 0 && k < nblocks[0]; k++) {
        rc = append(out, blocks[0][k].head, blocks[0][k].head_len);
        for (i = 0; rc == 0 && i < u->nreplicas; i++)
            if (k < nblocks[i])
                rc = labelled(out, blocks[i][k].body, blocks[i][k].body_len, labels[i]);
    }
    for (i = 0; i < u->nreplicas; i++)
        seldon_buf_free(&parts[i]);
    return rc;
}

void up_metrics_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    up *u = user_data;
    static const sdh_header ctype = {"content-type", 12, "text/plain; version=0.0.4", 25};
    seldon_buf b = SELDON_BUF_INIT;
    if (request->path_len == 8 && memcmp(request->path, "/metrics", 8) == 0) {
        if (render(&b, u) != 0) {
            seldon_buf_free(&b);
            sdh_respond_error(req, 500, "out of memory");
            return;
        }
        sdh_respond(req, 200, &ctype, 1, &b);
        return;
    }
    if (request->path_len == 5 && memcmp(request->path, "/live", 5) == 0) {
        sdh_respond(req, 200, NULL, 0, NULL);
        return;
    }
    if (request->path_len == 6 && memcmp(request->path, "/ready", 6) == 0) {
        sdh_respond(req, atomic_load(&u->sched_ready) ? 200 : 503, NULL, 0, NULL);
        return;
    }
    sdh_respond_error(req, 404, "not found: the metrics port serves /metrics, /live, /ready");
}
