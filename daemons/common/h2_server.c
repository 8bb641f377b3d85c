/*
 * The h2c server: its own listener, or connections adopted from the HTTP/1.1
 * server that read the preface (adopt.h). Runs on the loop it was created on.
 */
#include <string.h>

#include "h2_internal.h"
#include "sdd.h"

struct sd2_server {
    sd2_owner o; /* first: the connections point at it */
    sd2_server_cbs cbs;
    void *ud;
    uv_tcp_t listener;
    int listening, port;
    void (*done)(void *);
    void *done_data;
    int handles;   /* listener and work handles while closing */
    int finishing; /* every connection is gone: the work handles close */
};

static void srv_conn_gone(sd2_owner *o, sd2_conn *c)
{
    (void)o;
    (void)c;
}

static void srv_on_request(sd2_owner *o, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    sd2_server *srv = (sd2_server *)o;
    if (srv->cbs.on_request)
        srv->cbs.on_request(srv->ud, s, h, n, end);
    else
        nghttp2_submit_rst_stream(s->conn->ses, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_REFUSED_STREAM);
}

static void srv_handle_closed(uv_handle_t *h)
{
    sd2_server *srv = h->data;
    if (--srv->handles > 0 || !srv->finishing)
        return;
    if (srv->done)
        srv->done(srv->done_data);
    sd2_owner_fini(&srv->o);
    sdd_free(srv);
}

static void srv_all_gone(sd2_owner *o)
{
    sd2_server *srv = (sd2_server *)o;
    if (srv->finishing)
        return;
    srv->finishing = 1;
    srv->handles += 2;
    sd2_owner_close_handles(&srv->o, srv_handle_closed);
}

int sd2_server_new(sd2_server **out, uv_loop_t *loop, const sd2_opts *opts,
                   const sd2_server_cbs *cbs, void *user_data)
{
    sd2_server *srv;
    int rv;
    *out = NULL;
    srv = sdd_calloc(1, sizeof(*srv));
    if (srv == NULL)
        return SD2_ENOMEM;
    rv = sd2_owner_init(&srv->o, loop, opts, 0);
    if (rv < 0) {
        sdd_free(srv);
        return rv;
    }
    srv->o.conn_gone = srv_conn_gone;
    srv->o.on_request = srv_on_request;
    srv->o.all_gone = srv_all_gone;
    if (cbs)
        srv->cbs = *cbs;
    srv->ud = user_data;
    *out = srv;
    return 0;
}

/* Takes a connected stream: a session, the bytes already read, then reading. */
static int conn_start(sd2_server *srv, sd2_conn *c, const uint8_t *initial, size_t len)
{
    int rv;
    c->owner = &srv->o;
    c->connected = 1;
    rv = sd2_conn_session(c);
    if (rv < 0)
        return rv;
    sd2_conn_link(c);
    uv_timer_init(srv->o.loop, &c->ctimer);
    c->ctimer.data = c;
    c->timer_on = 1;
    sd2_conn_idle_arm(c);
    if (sd2_conn_start_read(c) < 0) {
        sd2_conn_fail(c, SD2_ECLOSED);
        return 0;
    }
    if (len > 0)
        sd2_conn_feed(c, initial, len);
    else
        sd2_conn_flush(c);
    return 0;
}

int sd2_server_adopt(void *user_data, const sd_adopt *a)
{
    sd2_server *srv = user_data;
    sd2_conn *c;
    int rv;
    if (srv->o.closing)
        return SELDON_EUNAVAIL;
    /* Each loop has its own server: a connection from another loop would be driven from two
     * threads. */
    if (a->stream->loop != srv->o.loop)
        return sdd_error(SELDON_EINVAL, "h2c: adopted connection is on another loop");
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return SELDON_ENOMEM;
    c->stream = a->stream;
    c->release = a->release;
    c->release_owner = a->owner;
    rv = conn_start(srv, c, a->initial, a->initial_len);
    if (rv < 0) {
        if (c->ses)
            nghttp2_session_del(c->ses);
        sdd_free(c);
        return SELDON_ENOMEM;
    }
    return 0;
}

static void free_unlinked(uv_handle_t *h)
{
    sdd_free(h->data);
}

static void on_accept(uv_stream_t *l, int status)
{
    sd2_server *srv = l->data;
    sd2_conn *c;
    if (status < 0 || srv->o.closing)
        return;
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL) {
        /* libuv polls the listener again only once this connection is taken: take it on
         * a bare handle and close it. */
        uv_tcp_t *t = sdd_malloc(sizeof(*t));
        if (t == NULL)
            return;
        uv_tcp_init(srv->o.loop, t);
        t->data = t;
        uv_accept(l, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, free_unlinked);
        return;
    }
    uv_tcp_init(srv->o.loop, &c->tcp);
    c->own_tcp = 1;
    c->stream = (uv_stream_t *)&c->tcp;
    c->tcp.data = c;
    if (uv_accept(l, c->stream) < 0 || conn_start(srv, c, NULL, 0) < 0) {
        /* Not linked: close and free here. */
        if (c->ses)
            nghttp2_session_del(c->ses);
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, free_unlinked);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
}

int sd2_server_listen(sd2_server *srv, const char *host, int port)
{
    struct sockaddr_storage ss;
    int namelen = sizeof(ss);
    int rv;
    if (srv->listening)
        return SD2_EPROTO;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return sdd_error(SELDON_EINVAL, "host: %s is not a numeric IP address", host);
    uv_tcp_init(srv->o.loop, &srv->listener);
    srv->listener.data = srv;
    srv->listening = 1;
    rv = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&srv->listener, 1024, on_accept);
    if (rv != 0)
        return sdd_error(SELDON_EIO, "listen on %s:%d: %s", host, port, uv_strerror(rv));
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &namelen) == 0)
        srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int sd2_server_port(const sd2_server *srv)
{
    return srv->port;
}

size_t sd2_server_conns(const sd2_server *srv)
{
    return srv->o.nconns;
}

static void begin_close(sd2_server *srv, void (*done)(void *), void *done_data)
{
    srv->o.closing = 1;
    srv->done = done;
    srv->done_data = done_data;
    /* Closing the socket is what refuses new connections; not polling it would leave the
     * kernel accepting them into the backlog. */
    if (srv->listening && !uv_is_closing((uv_handle_t *)&srv->listener)) {
        srv->handles++;
        srv->listener.data = srv;
        uv_close((uv_handle_t *)&srv->listener, srv_handle_closed);
    }
}

static void check_gone(sd2_server *srv)
{
    /* With no connection and no zombie, finish now; else the deferred work will. */
    if (srv->o.nconns == 0 && srv->o.zombies == NULL && srv->o.dirty == NULL)
        srv_all_gone(&srv->o);
}

void sd2_server_close(sd2_server *srv, void (*done)(void *), void *done_data)
{
    if (srv == NULL)
        return;
    begin_close(srv, done, done_data);
    /* A failing connection may take others with it (user callbacks): rescan each time. */
    for (;;) {
        sd2_conn *c = srv->o.conns;
        while (c != NULL && (c->dead || c->failing))
            c = c->next;
        if (c == NULL)
            break;
        sd2_conn_fail(c, SD2_ECANCELED);
    }
    check_gone(srv);
}

void sd2_server_drain(sd2_server *srv, void (*done)(void *), void *done_data)
{
    if (srv == NULL)
        return;
    begin_close(srv, done, done_data);
    for (;;) {
        sd2_conn *c = srv->o.conns;
        while (c != NULL && (c->dead || c->failing || c->goaway_sent))
            c = c->next;
        if (c == NULL)
            break;
        c->goaway_sent = 1;
        nghttp2_submit_goaway(c->ses, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->ses), NGHTTP2_NO_ERROR,
                              NULL, 0);
        sd2_conn_mark(c);
    }
    check_gone(srv);
}
