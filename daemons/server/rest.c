/*
 * REST: the HTTP transport in, seldon_service_rest(), bytes out.
 */
#include <stddef.h>
#include <string.h>

#include "server.h"

/* The request's headers are handed over as they are: the two layouts must agree. */
_Static_assert(sizeof(sdh_header) == sizeof(seldon_http_header), "header layouts differ");
_Static_assert(offsetof(sdh_header, name_len) == offsetof(seldon_http_header, name_len) &&
                   offsetof(sdh_header, value) == offsetof(seldon_http_header, value) &&
                   offsetof(sdh_header, value_len) == offsetof(seldon_http_header, value_len),
               "header layouts differ");

static void rest_done(void *user_data, seldon_rest_response *r)
{
    sdh_header h[4];
    size_t i, n = r->nheaders < 4 ? r->nheaders : 4;
    for (i = 0; i < n; i++) {
        h[i].name = r->headers[i].name;
        h[i].name_len = r->headers[i].name_len;
        h[i].value = r->headers[i].value;
        h[i].value_len = r->headers[i].value_len;
    }
    sdh_respond(user_data, r->status, h, n, &r->body);
}

void srv_rest_handler(void *user_data, sdh_req *req, const sdh_request *r)
{
    srv *s = user_data;
    seldon_rest_request q;
    q.method = r->method;
    q.method_len = r->method_len;
    q.path = r->path;
    q.path_len = r->path_len;
    q.query = r->query;
    q.query_len = r->query_len;
    q.headers = (const seldon_http_header *)(const void *)r->headers;
    q.nheaders = r->nheaders;
    q.body = r->body;
    q.body_len = r->body_len;
    if (seldon_service_rest(s->svc, &q, rest_done, req) != 0)
        sdh_respond_error(req, 500, seldon_last_error());
}
