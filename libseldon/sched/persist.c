/*
 * The scheduler's records in the state store, and the reload.
 *
 * One record per model (its versions and their slots), one per server (its
 * Server resource and the replicas it knew), one per pipeline or experiment
 * (canonical JSON). The encoding is compact and needs no parser: varints
 * (LEB128), zigzag for signed values, strings as length + 1 then bytes
 * (0 for NULL). A record starts with its format byte.
 *
 * Every call that changes state writes the records it dirtied in one
 * transaction (sdn_sch_persist, from finish()).
 */
#include <string.h>

#include "sched/sched.h"

#define REC_FORMAT 1
#define PIPELINE_FORMAT 2 /* first byte of a pipeline record; JSON starts with '{' */

/* --- Writer ---------------------------------------------------------------- */

static int put_u8(seldon_buf *b, uint8_t x)
{
    return sdn_buf_append(b, &x, 1);
}

static int put_var(seldon_buf *b, uint64_t x)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t c = (uint8_t)(x & 0x7f);
        x >>= 7;
        tmp[n++] = (uint8_t)(c | (x ? 0x80 : 0));
    } while (x);
    return sdn_buf_append(b, tmp, n);
}

static int put_i64(seldon_buf *b, int64_t x)
{
    return put_var(b, ((uint64_t)x << 1) ^ (uint64_t)(x >> 63));
}

static int put_strn(seldon_buf *b, const char *s, size_t len)
{
    int rc;
    if (s == NULL)
        return put_var(b, 0);
    if ((rc = put_var(b, (uint64_t)len + 1)) != 0)
        return rc;
    return sdn_buf_append(b, s, len);
}

static int put_str(seldon_buf *b, const char *s)
{
    return put_strn(b, s, s ? strlen(s) : 0);
}

/* --- Reader ---------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
    int bad;
} rd;

static uint64_t get_var(rd *r)
{
    uint64_t x = 0;
    int shift = 0;
    while (r->p < r->end && shift < 64) {
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return x;
        shift += 7;
    }
    r->bad = 1;
    return 0;
}

static uint8_t get_u8(rd *r)
{
    if (r->p >= r->end) {
        r->bad = 1;
        return 0;
    }
    return *r->p++;
}

static int64_t get_i64(rd *r)
{
    uint64_t z = get_var(r);
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* A view into the record: *len bytes at the return value, NULL for a NULL string. */
static const char *get_view(rd *r, size_t *len)
{
    uint64_t n = get_var(r);
    const char *p;
    *len = 0;
    if (n == 0 || r->bad)
        return NULL;
    n--;
    if ((uint64_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    p = (const char *)r->p;
    r->p += n;
    *len = (size_t)n;
    return p;
}

static char *get_str(rd *r, size_t *out_len)
{
    size_t len;
    const char *p = get_view(r, &len);
    char *c;
    if (out_len)
        *out_len = len;
    if (p == NULL)
        return NULL;
    c = sdn_strndup(p, len);
    if (c == NULL)
        r->bad = 2;
    return c;
}

/* --- Encoding -------------------------------------------------------------- */

static int encode_model(seldon_buf *b, const seldon_sched *s, const sch_model *m)
{
    uint32_t i, j;
    int rc = 0;
    b->len = 0;
    rc |= put_u8(b, REC_FORMAT);
    rc |= put_var(b, m->latest);
    rc |= put_u8(b, m->deleted);
    rc |= put_var(b, m->nversions);
    for (i = 0; i < m->nversions && rc == 0; i++) {
        const sch_version *v = m->versions[i];
        rc |= put_var(b, v->number);
        rc |= put_u8(b, v->state);
        rc |= put_u8(b, v->terminating);
        rc |= put_i64(b, v->last_change);
        rc |= put_str(b, v->reason);
        rc |= put_str(b, v->place_reason);
        rc |= put_strn(b, v->spec, v->spec_len);
        rc |= put_str(b, v->pin);
        rc |= put_var(b, v->nreqs);
        for (j = 0; j < v->nreqs; j++)
            rc |= put_str(b, s->caps[v->reqs[j]]);
        rc |= put_i64(b, v->memory);
        rc |= put_i64(b, v->replicas);
        rc |= put_i64(b, v->min_replicas);
        rc |= put_i64(b, v->max_replicas);
        rc |= put_str(b, v->server ? v->server->name : NULL);
        rc |= put_var(b, v->nslots);
        for (j = 0; j < v->nslots; j++) {
            const sch_slot *sl = v->slots[j];
            rc |= put_str(b, sl->r->s->name);
            rc |= put_var(b, sl->r->index);
            rc |= put_u8(b, sl->state);
            rc |= put_u8(b, sl->leaving);
            rc |= put_i64(b, sl->last_change);
            rc |= put_str(b, sl->reason);
        }
    }
    return rc ? SELDON_ENOMEM : 0;
}

static int encode_server(seldon_buf *b, const seldon_sched *s, const sch_server *sv)
{
    uint32_t i, j, n = 0;
    int rc = 0;
    b->len = 0;
    rc |= put_u8(b, REC_FORMAT);
    rc |= put_u8(b, sv->has_resource);
    rc |= put_u8(b, sv->deleted);
    rc |= put_i64(b, sv->desired);
    rc |= put_str(b, sv->spec);
    rc |= put_var(b, sv->ncaps);
    for (i = 0; i < sv->ncaps; i++)
        rc |= put_str(b, s->caps[sv->caps[i]]);
    for (i = 0; i < sv->nreplicas; i++)
        n += sv->replicas[i] != NULL;
    rc |= put_var(b, n);
    for (i = 0; i < sv->nreplicas; i++) {
        const sch_replica *r = sv->replicas[i];
        if (r == NULL)
            continue;
        rc |= put_var(b, r->index);
        rc |= put_str(b, r->http);
        rc |= put_str(b, r->grpc);
        rc |= put_var(b, r->nown_caps);
        for (j = 0; j < r->nown_caps; j++)
            rc |= put_str(b, r->own_caps[j]);
        rc |= put_i64(b, r->memory);
        rc |= put_var(b, r->overcommit);
        rc |= put_u8(b, r->expected);
    }
    /* The last scale request (autoscale.c): optional, records without it read as none. */
    rc |= put_var(b, sv->scale_want);
    rc |= put_str(b, sv->scale_reason);
    return rc ? SELDON_ENOMEM : 0;
}

int sdn_sch_persist(seldon_sched *s)
{
    sdn_store_txn *txn = NULL;
    seldon_buf *b = &s->scratch;
    uint32_t i;
    int rc;

    if (s->ndirty_models == 0 && s->ndirty_servers == 0 && s->ndirty_resources == 0)
        return 0;
    if ((rc = sdn_store_begin(&txn, s->store)) != 0)
        return rc;
    for (i = 0; i < s->ndirty_servers; i++) {
        const sch_server *sv = s->dirty_servers[i];
        if ((rc = encode_server(b, s, sv)) != 0 ||
            (rc = sdn_store_put(txn, SCH_DB_SERVERS, sv->name, strlen(sv->name), b->data,
                                b->len)) != 0)
            goto fail;
    }
    for (i = 0; i < s->ndirty_models; i++) {
        const sch_model *m = s->dirty_models[i];
        if ((rc = encode_model(b, s, m)) != 0 ||
            (rc = sdn_store_put(txn, SCH_DB_MODELS, m->name, strlen(m->name), b->data, b->len)) !=
                0)
            goto fail;
    }
    for (i = 0; i < s->ndirty_resources; i++) {
        const sch_resource *res = s->dirty_resources[i];
        const sch_pipeline *p = res->key[0] == 'P' ? sdn_sch_pipeline_find(s, res->key + 2) : NULL;
        if (res->live && p != NULL) {
            /* A pipeline: its version, then its JSON (a record from before versions is JSON). */
            b->len = 0;
            if (put_u8(b, PIPELINE_FORMAT) != 0 || put_var(b, p->version) != 0 ||
                sdn_buf_append(b, res->json, res->json_len) != 0) {
                rc = SELDON_ENOMEM;
                goto fail;
            }
            rc = sdn_store_put(txn, SCH_DB_RESOURCES, res->key, strlen(res->key), b->data, b->len);
        } else if (res->live)
            rc = sdn_store_put(txn, SCH_DB_RESOURCES, res->key, strlen(res->key), res->json,
                               res->json_len);
        else
            rc = sdn_store_del(txn, SCH_DB_RESOURCES, res->key, strlen(res->key));
        if (rc != 0)
            goto fail;
    }
    return sdn_store_commit(txn);
fail:
    if (rc == SELDON_ENOMEM)
        sdn_error(rc, "scheduler: out of memory encoding the state");
    sdn_store_abort(txn);
    return rc;
}

/* One write transaction putting key = val in SCH_DB_META. */
static int meta_put(seldon_sched *s, const char *key, const void *val, size_t len)
{
    sdn_store_txn *txn = NULL;
    int rc = sdn_store_begin(&txn, s->store);
    if (rc != 0)
        return rc;
    if ((rc = sdn_store_put(txn, SCH_DB_META, key, strlen(key), val, len)) != 0) {
        sdn_store_abort(txn);
        return rc;
    }
    return sdn_store_commit(txn);
}

int sdn_sch_store_probe(seldon_sched *s, size_t bytes)
{
    static const char key[] = "write-probe";
    uint8_t *ballast = sdn_calloc(1, bytes ? bytes : 1);
    int rc;
    if (ballast == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    /*
     * The ballast is committed (the volume had room for it), then replaced by a byte,
     * twice: LMDB reuses a page only once the transaction that freed it is older than
     * the last one committed, so after the second small write the ballast's pages are
     * free for the write that follows, which then needs no room the volume lacks.
     */
    rc = meta_put(s, key, ballast, bytes);
    if (rc == 0) {
        ballast[0] = 1;
        rc = meta_put(s, key, ballast, 1);
    }
    if (rc == 0) {
        ballast[0] = 2;
        rc = meta_put(s, key, ballast, 1);
    }
    sdn_free(ballast);
    return rc;
}

/* --- Reload ---------------------------------------------------------------- */

static int bad_record(const rd *r, const char *what, const void *key, size_t klen)
{
    if (r != NULL && r->bad == 2)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory reading the state");
    return sdn_error(SELDON_EPARSE, "state store: %s record \"%.*s\" is damaged", what,
                     (int)(klen > 200 ? 200 : klen), (const char *)key);
}

static int cap_of(seldon_sched *s, rd *r, uint32_t *out)
{
    size_t len;
    const char *p = get_view(r, &len);
    int64_t id;
    if (p == NULL) {
        r->bad = 1;
        return SELDON_EPARSE;
    }
    id = sdn_sch_cap_id(s, p, len);
    if (id < 0)
        return (int)id;
    *out = (uint32_t)id;
    return 0;
}

static int key_name(char *out, size_t cap, const void *key, size_t klen)
{
    if (klen == 0 || klen >= cap || memchr(key, 0, klen) != NULL)
        return SELDON_EPARSE;
    memcpy(out, key, klen);
    out[klen] = '\0';
    return 0;
}

static int load_server(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
    seldon_sched *s = ud;
    rd r = {val, (const uint8_t *)val + vlen, 0};
    char name[SELDON_MANIFEST_NAME_MAX + 1];
    sch_server *sv = NULL;
    uint64_t i, j, n;
    int rc;

    if (key_name(name, sizeof(name), key, klen) != 0 || get_u8(&r) != REC_FORMAT)
        return bad_record(&r, "server", key, klen);
    if ((rc = sdn_sch_server_get(&sv, s, name, 1)) != 0)
        return rc;
    if (sv->spec != NULL || sv->caps != NULL || sv->has_resource)
        return bad_record(NULL, "server", key, klen); /* a second record for it */
    sv->has_resource = get_u8(&r);
    sv->deleted = get_u8(&r);
    sv->desired = (int32_t)get_i64(&r);
    sv->spec = get_str(&r, NULL);
    n = get_var(&r);
    if (r.bad || n > (uint64_t)(r.end - r.p))
        return bad_record(&r, "server", key, klen);
    sv->caps = sdn_malloc((size_t)(n + 1) * sizeof(uint32_t));
    if (sv->caps == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    for (i = 0; i < n; i++) {
        if ((rc = cap_of(s, &r, &sv->caps[i])) != 0)
            return r.bad ? bad_record(&r, "server", key, klen) : rc;
        sv->ncaps++;
    }
    n = get_var(&r);
    for (i = 0; i < n && !r.bad; i++) {
        sch_replica *rep = NULL;
        uint64_t index = get_var(&r), nc;
        if (r.bad || index > 65535)
            break;
        if ((rc = sdn_sch_replica_get(&rep, s, sv, (uint32_t)index, 1)) != 0)
            return rc;
        if (rep->http != NULL || rep->grpc != NULL || rep->own_caps != NULL) {
            r.bad = 1; /* the same replica twice */
            break;
        }
        rep->http = get_str(&r, NULL);
        rep->grpc = get_str(&r, NULL);
        nc = get_var(&r);
        if (r.bad || nc > (uint64_t)(r.end - r.p))
            break;
        if (nc > 0) {
            rep->own_caps = sdn_calloc((size_t)nc, sizeof(char *));
            if (rep->own_caps == NULL)
                return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
            for (j = 0; j < nc && !r.bad; j++)
                if ((rep->own_caps[rep->nown_caps] = get_str(&r, NULL)) != NULL)
                    rep->nown_caps++;
        }
        rep->memory = get_i64(&r);
        rep->overcommit = (uint32_t)get_var(&r);
        if (rep->memory < 0 || rep->overcommit > 1000)
            r.bad = 1;
        rep->expected = get_u8(&r);
        if ((rc = sdn_sch_replica_set_caps(s, rep)) != 0)
            return rc;
    }
    if (!r.bad && r.p < r.end) {
        uint64_t want = get_var(&r);
        if (r.bad || want > 65536)
            return bad_record(&r, "server", key, klen);
        sv->scale_want = (uint32_t)want;
        sdn_free(sv->scale_reason);
        sv->scale_reason = get_str(&r, NULL);
        /* Asked once more at start: the host sets the count again (idempotent), so a
           request decided just before the scheduler went down is carried out, and seldon
           up starts its extra replicas again. */
        sv->scale_owed = sv->scale_want > 0;
    }
    if (r.bad)
        return bad_record(&r, "server", key, klen);
    return 0;
}

static int load_model(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
    seldon_sched *s = ud;
    rd r = {val, (const uint8_t *)val + vlen, 0};
    char name[SELDON_MANIFEST_NAME_MAX + 1];
    sch_model *m = NULL;
    uint64_t i, j, n;
    int rc;

    if (key_name(name, sizeof(name), key, klen) != 0 || get_u8(&r) != REC_FORMAT)
        return bad_record(&r, "model", key, klen);
    if ((rc = sdn_sch_model_get(&m, s, name, 1)) != 0)
        return rc;
    if (m->nversions > 0 || m->persisted)
        return bad_record(NULL, "model", key, klen); /* a second record for it */
    m->latest = (uint32_t)get_var(&r);
    m->deleted = get_u8(&r);
    m->persisted = 1;
    n = get_var(&r);
    for (i = 0; i < n && !r.bad; i++) {
        sch_version *v = NULL;
        uint64_t number = get_var(&r);
        uint64_t nr, ns;
        size_t len;
        const char *srv;
        /* Versions are stored oldest first, numbered from 1, each once. */
        if (r.bad || number == 0 || number > UINT32_MAX ||
            (m->nversions > 0 && number <= m->versions[m->nversions - 1]->number)) {
            r.bad = r.bad ? r.bad : 1;
            break;
        }
        if ((rc = sdn_sch_version_new(&v, s, m, (uint32_t)number)) != 0)
            return rc;
        v->state = get_u8(&r);
        v->terminating = get_u8(&r);
        v->last_change = get_i64(&r);
        v->reason = get_str(&r, NULL);
        v->place_reason = get_str(&r, NULL);
        v->spec = get_str(&r, &v->spec_len);
        v->pin = get_str(&r, NULL);
        nr = get_var(&r);
        if (r.bad || nr > (uint64_t)(r.end - r.p))
            break;
        if (nr > 0) {
            v->reqs = sdn_malloc((size_t)nr * sizeof(uint32_t));
            if (v->reqs == NULL)
                return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
            for (j = 0; j < nr && !r.bad; j++) {
                if ((rc = cap_of(s, &r, &v->reqs[j])) != 0) {
                    if (!r.bad)
                        return rc;
                    break;
                }
                v->nreqs++;
            }
        }
        v->memory = get_i64(&r);
        v->replicas = (int32_t)get_i64(&r);
        v->min_replicas = (int32_t)get_i64(&r);
        v->max_replicas = (int32_t)get_i64(&r);
        if (v->memory < 0 || v->state >= SCH_M__COUNT || v->replicas < 0 || v->min_replicas < 0) {
            r.bad = r.bad ? r.bad : 1;
            break;
        }
        srv = get_view(&r, &len);
        if (srv != NULL && len <= SELDON_MANIFEST_NAME_MAX) {
            char sname[SELDON_MANIFEST_NAME_MAX + 1];
            memcpy(sname, srv, len);
            sname[len] = '\0';
            if ((rc = sdn_sch_server_get(&v->server, s, sname, 1)) != 0)
                return rc;
        }
        ns = get_var(&r);
        for (j = 0; j < ns && !r.bad; j++) {
            sch_server *sv = NULL;
            sch_replica *rep = NULL;
            sch_slot *sl = NULL;
            char sname[SELDON_MANIFEST_NAME_MAX + 1];
            const char *p = get_view(&r, &len);
            uint32_t index = (uint32_t)get_var(&r);
            uint8_t state = get_u8(&r), leaving = get_u8(&r);
            int64_t last = get_i64(&r);
            char *reason = get_str(&r, NULL);
            if (r.bad || p == NULL || len > SELDON_MANIFEST_NAME_MAX || state >= SCH_R__COUNT) {
                sdn_free(reason);
                r.bad = r.bad ? r.bad : 1;
                break;
            }
            memcpy(sname, p, len);
            sname[len] = '\0';
            if ((rc = sdn_sch_server_get(&sv, s, sname, 1)) != 0 ||
                (rc = sdn_sch_replica_get(&rep, s, sv, index, 1)) != 0) {
                sdn_free(reason);
                return rc;
            }
            {
                uint32_t q;
                for (q = 0; q < v->nslots; q++)
                    if (v->slots[q]->r == rep)
                        break;
                if (q < v->nslots) { /* one slot per replica per version */
                    sdn_free(reason);
                    r.bad = 1;
                    break;
                }
            }
            if ((rc = sdn_sch_slot_new(&sl, s, v, rep, SCH_R_UNKNOWN)) != 0) {
                sdn_free(reason);
                return rc;
            }
            /* Grace timers do not survive a restart: those unloads are simply owed. */
            if (state == SCH_R_UNLOAD_ENVOY_REQUESTED)
                state = SCH_R_UNLOAD_REQUESTED;
            sl->state = state;
            sl->leaving = leaving;
            sl->last_change = last;
            sl->reason = reason;
            if (state == SCH_R_LOAD_FAILED) {
                sl->mem = 0;
                rep->used -= v->memory;
            }
        }
        if (number > m->latest)
            m->latest = (uint32_t)number;
    }
    if (r.bad)
        return bad_record(&r, "model", key, klen);
    return 0;
}

static int load_resource(void *ud, const void *key, size_t klen, const void *val, size_t vlen)
{
    seldon_sched *s = ud;
    char name[SELDON_MANIFEST_NAME_MAX + 8];
    int rc;
    if (key_name(name, sizeof(name), key, klen) != 0 || klen < 3 || name[1] != ':')
        return bad_record(NULL, "resource", key, klen);
    if (name[0] == 'P') {
        rd r = {(const uint8_t *)val, (const uint8_t *)val + vlen, 0};
        uint64_t version = 1;
        if (vlen > 0 && ((const uint8_t *)val)[0] == PIPELINE_FORMAT) {
            get_u8(&r);
            version = get_var(&r);
            if (r.bad || version == 0 || version > UINT32_MAX)
                return bad_record(&r, "pipeline", key, klen);
            vlen = (size_t)(r.end - r.p);
            val = r.p;
        }
        if ((rc = sdn_sch_resource_put(s, name, val, vlen, 1)) != 0)
            return rc;
        return sdn_sch_pipeline_loaded(s, name + 2, val, vlen, (uint32_t)version);
    }
    if ((rc = sdn_sch_resource_put(s, name, val, vlen, 1)) != 0)
        return rc;
    if (name[0] == 'E') {
        /* Experiments are few: their default is read back from the canonical JSON. */
        seldon_manifest *m = NULL;
        if (seldon_manifest_parse(&m, val, vlen, "state store") == 0 &&
            seldon_manifest_count(m) == 1)
            rc = sdn_sch_resource_experiment(s, name, seldon_manifest_at(m, 0));
        seldon_manifest_free(m);
    }
    return rc;
}

int sdn_sch_decode(seldon_sched *s, int db, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    switch (db) {
    case SCH_DB_SERVERS:
        return load_server(s, key, klen, val, vlen);
    case SCH_DB_MODELS:
        return load_model(s, key, klen, val, vlen);
    case SCH_DB_RESOURCES:
        return load_resource(s, key, klen, val, vlen);
    default:
        return sdn_error(SELDON_EINVAL, "state store: no database %d", db);
    }
}

int sdn_sch_reload(seldon_sched *s)
{
    int rc;
    if ((rc = sdn_store_walk(s->store, SCH_DB_SERVERS, load_server, s)) != 0 ||
        (rc = sdn_store_walk(s->store, SCH_DB_MODELS, load_model, s)) != 0 ||
        (rc = sdn_store_walk(s->store, SCH_DB_RESOURCES, load_resource, s)) != 0)
        return rc;
    sdn_sch_pipelines_reload_all(s);
    s->routes_changed = 0;
    s->ndirty_resources = 0;
    return 0;
}
