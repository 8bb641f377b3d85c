/*
 * libFuzzer target for the scheduler's state records (what seldon_sched_open
 * decodes from LMDB). The input is a list of records: a database byte (0
 * models, 1 servers, 2 resources), a key length byte, the key, a 2-byte
 * little-endian value length, the value. They are decoded in order as a
 * reload would; whatever decodes must then survive the scheduler's work:
 * status snapshots, routes, the ready transition, a replica connecting and
 * disconnecting, commands, time, and close. A refused record carries a
 * message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s (%s)\n", what, seldon_last_error());
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seldon_sched *s = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    seldon_sched_status *st = NULL;
    seldon_routes *rt = NULL;
    seldon_sched_command c;
    seldon_sched_event e;
    seldon_sched_replica r;
    const char *caps[] = {"sklearn"};
    size_t p = 0;
    uint32_t i, j;
    int rc = 0;

    cfg.ready_timeout_ms = 1000;
    if (seldon_sched_open(&s, &cfg, 0) != 0)
        fail("open");
    while (p + 2 <= size && rc == 0) {
        int db = data[p] % 3;
        size_t klen = data[p + 1], vlen;
        const uint8_t *key = data + p + 2;
        if (p + 2 + klen + 2 > size)
            break;
        vlen = (size_t)data[p + 2 + klen] | (size_t)data[p + 3 + klen] << 8;
        if (p + 4 + klen + vlen > size)
            vlen = size - (p + 4 + klen);
        rc = sdn_sch_decode(s, db, key, klen, data + p + 4 + klen, vlen);
        if (rc != 0 && seldon_last_error()[0] == '\0')
            fail("a refused record without a message");
        p += 4 + klen + vlen;
    }
    if (rc != 0) {
        /* seldon_sched_open gives up here: what was decoded must still free cleanly. */
        seldon_sched_close(s);
        return 0;
    }
    /* As sdn_sch_reload ends: stored pipelines compiled again. */
    sdn_sch_pipelines_reload_all(s);
    /* As seldon_sched_open does after a reload with replicas to wait for. */
    s->ready = 0;
    s->ready_deadline = 1000 * 1000000LL;
    if (seldon_sched_models(&st, s, NULL) == 0)
        seldon_sched_status_free(st);
    if (seldon_sched_servers(&st, s, NULL) == 0)
        seldon_sched_status_free(st);
    if (seldon_sched_pipelines(&st, s, NULL) == 0)
        seldon_sched_status_free(st);
    if (seldon_sched_routes(&rt, s) == 0)
        seldon_routes_release(rt);
    memset(&r, 0, sizeof(r));
    r.server = s->nservers > 0 ? s->servers[0]->name : "mlserver";
    r.http = "127.0.0.1:1";
    r.capabilities = caps;
    r.capabilities_count = 1;
    r.memory_bytes = 1 << 20;
    seldon_sched_agent_connect(s, &r, NULL, 0, 1);
    seldon_sched_tick(s, 2000 * 1000000LL);
    for (i = 0; i < 64 && seldon_sched_next_command(s, &c) == 0; i++)
        seldon_sched_agent_event(
            s, c.server, c.index, c.id, c.model, c.version,
            c.op == SELDON_SCHED_LOAD ? SELDON_SCHED_LOADED : SELDON_SCHED_UNLOADED, NULL, 3);
    seldon_sched_agent_disconnect(s, r.server, 0, 4);
    for (i = 0; i < s->nmodels && i < 8; i++)
        seldon_sched_unload(s, SELDON_KIND_MODEL, s->models[i]->name, 5);
    seldon_sched_tick(s, INT64_MAX / 2);
    if (seldon_sched_models(&st, s, NULL) == 0) {
        for (j = 0; j < seldon_sched_status_count(st); j++)
            if (seldon_sched_status_model(st, j)->name == NULL)
                fail("a model without a name");
        seldon_sched_status_free(st);
    }
    while (seldon_sched_next_event(s, &e) == 0)
        ;
    seldon_sched_close(s);
    return 0;
}
