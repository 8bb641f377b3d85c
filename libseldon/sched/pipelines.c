/*
 * Pipelines as resources of the scheduler: compiled on apply (refused with
 * the compiler's error before anything changes), versioned, stored, and
 * Ready only while every model their steps call is available and every
 * pipeline they read is Ready. The rules are in docs/scheduler.md
 * ("Pipelines").
 */
#include <stdio.h>
#include <string.h>

#include "sched/sched.h"

static const char *const pipeline_states[SCH_P__COUNT] = {
    "PipelineCreate", "PipelineCreating",    "PipelineReady",
    "PipelineFailed", "PipelineTerminating", "PipelineTerminated"};

const char *sdn_sched_pipeline_state_name(int state)
{
    return state >= 0 && state < SCH_P__COUNT ? pipeline_states[state] : pipeline_states[0];
}

sch_pipeline *sdn_sch_pipeline_find(const seldon_sched *s, const char *name)
{
    return sdn_sch_map_get(&s->pipelines_by_name, name);
}

int sdn_sch_model_available(const seldon_sched *s, const char *name)
{
    const sch_model *m = sdn_sch_map_get(&s->models_by_name, name);
    uint32_t i;
    if (m == NULL || m->deleted)
        return 0;
    for (i = 0; i < m->nversions; i++)
        if (m->versions[i]->state == SCH_M_AVAILABLE)
            return 1;
    return 0;
}

static int pipeline_get(sch_pipeline **out, seldon_sched *s, const char *name)
{
    sch_pipeline *p = sdn_sch_pipeline_find(s, name);
    int rc;
    *out = p;
    if (p != NULL)
        return 0;
    if ((rc = sdn_sch_grow((void **)&s->pipelines, &s->cappipelines, s->npipelines + 1,
                           sizeof(void *))) != 0)
        return rc;
    p = sdn_calloc(1, sizeof(*p));
    if (p == NULL || (p->name = sdn_strndup(name, strlen(name))) == NULL) {
        sdn_free(p);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    p->deleted = 1;
    if ((rc = sdn_sch_map_put(&s->pipelines_by_name, p->name, p)) != 0) {
        sdn_free(p->name);
        sdn_free(p);
        return rc;
    }
    s->pipelines[s->npipelines++] = p;
    *out = p;
    return 0;
}

static void names_free(char ***v, uint32_t *n)
{
    uint32_t i;
    for (i = 0; i < *n; i++)
        sdn_free((*v)[i]);
    sdn_free(*v);
    *v = NULL;
    *n = 0;
}

static void waiting_clear(sch_pipeline *p)
{
    names_free(&p->waiting, &p->nwaiting);
    names_free(&p->waiting_pl, &p->nwaiting_pl);
}

static void pipeline_state(seldon_sched *s, sch_pipeline *p, int state, const char *reason)
{
    if (p->state == state && ((reason == NULL && p->reason == NULL) ||
                              (reason && p->reason && strcmp(reason, p->reason) == 0)))
        return;
    p->state = (uint8_t)state;
    sdn_sch_set_reason(&p->reason, reason);
    p->last_change = s->now;
    s->pl_changes++;
    sdn_sch_event(s, SELDON_KIND_PIPELINE, p->name, p->version,
                  sdn_sched_pipeline_state_name(state), reason, NULL, -1);
}

/* The names in list (n of them) not passing ok(s, name), each once; -1 when out of memory. */
static int not_ok(char ***out, uint32_t *out_n, seldon_sched *s, size_t n,
                  const char *(*at)(const seldon_pipeline *, size_t), const seldon_pipeline *c,
                  int (*ok)(const seldon_sched *, const char *))
{
    char **w = NULL;
    uint32_t nw = 0;
    size_t i, j;
    *out = NULL;
    *out_n = 0;
    for (i = 0; i < n; i++) {
        const char *m = at(c, i);
        if (ok(s, m))
            continue;
        for (j = 0; j < i; j++)
            if (strcmp(at(c, j), m) == 0)
                break;
        if (j < i)
            continue; /* named twice: listed once */
        if (w == NULL && (w = sdn_calloc(n, sizeof(char *))) == NULL)
            return -1;
        if ((w[nw] = sdn_strndup(m, strlen(m))) == NULL) {
            names_free(&w, &nw);
            return -1;
        }
        nw++;
    }
    *out = w;
    *out_n = nw;
    return 0;
}

static int pipeline_ready(const seldon_sched *s, const char *name)
{
    const sch_pipeline *q = sdn_sch_pipeline_find(s, name);
    return q != NULL && !q->deleted && q->compiled != NULL && q->state == SCH_P_READY;
}

static void append_names(seldon_buf *b, const char *one, const char *many, char **v, uint32_t n,
                         const seldon_sched *s)
{
    uint32_t i;
    if (b->len > 0)
        sdn_buf_append(b, "; ", 2);
    sdn_buf_append(b, n == 1 ? one : many, strlen(n == 1 ? one : many));
    for (i = 0; i < n; i++) {
        if (i > 0)
            sdn_buf_append(b, ", ", 2);
        sdn_buf_append(b, "\"", 1);
        sdn_buf_append(b, v[i], strlen(v[i]));
        sdn_buf_append(b, "\"", 1);
        if (s != NULL) { /* a pipeline: its state says why */
            const sch_pipeline *q = sdn_sch_pipeline_find(s, v[i]);
            const char *st = q == NULL || q->deleted ? "PipelineTerminated"
                                                     : sdn_sched_pipeline_state_name(q->state);
            sdn_buf_append(b, " (", 2);
            sdn_buf_append(b, st, strlen(st));
            sdn_buf_append(b, ")", 1);
        }
    }
}

/* Which of its models and of the pipelines it reads the pipeline waits for; its state follows. */
static void pipeline_refresh(seldon_sched *s, sch_pipeline *p)
{
    char **w = NULL, **wp = NULL;
    uint32_t nw = 0, nwp = 0;
    seldon_buf b = {0};

    if (p->deleted || p->compiled == NULL)
        return;
    if (not_ok(&w, &nw, s, seldon_pipeline_step_count(p->compiled), seldon_pipeline_step_name,
               p->compiled, sdn_sch_model_available) < 0)
        return; /* looked at again on the next change */
    if (not_ok(&wp, &nwp, s, seldon_pipeline_dependency_count(p->compiled),
               seldon_pipeline_dependency, p->compiled, pipeline_ready) < 0) {
        names_free(&w, &nw);
        return;
    }
    waiting_clear(p);
    p->waiting = w;
    p->nwaiting = nw;
    p->waiting_pl = wp;
    p->nwaiting_pl = nwp;
    p->models_ready = nw == 0;
    if (nw == 0 && nwp == 0) {
        pipeline_state(s, p, SCH_P_READY, NULL);
        return;
    }
    if (nw > 0)
        append_names(&b, "waiting for model ", "waiting for models ", w, nw, NULL);
    if (nwp > 0)
        append_names(&b, "waiting for pipeline ", "waiting for pipelines ", wp, nwp, s);
    if (sdn_buf_append(&b, "", 1) == 0)
        pipeline_state(s, p, SCH_P_CREATING, (const char *)b.data);
    else
        pipeline_state(s, p, SCH_P_CREATING, nw ? "waiting for models" : "waiting for pipelines");
    seldon_buf_free(&b);
}

/*
 * The pipelines that read others look again until nothing changes: a
 * pipeline's state may change its readers', theirs their readers'. Pipelines
 * may read each other in a ring (a new version can close one), so the passes
 * are bounded: a ring never becomes Ready by itself, and each pass settles at
 * least one more link of a chain.
 */
static void readers_settle(seldon_sched *s)
{
    uint32_t pass, i;
    for (pass = 0; pass <= s->npipelines; pass++) {
        uint32_t before = s->pl_changes;
        for (i = 0; i < s->npipelines; i++) {
            sch_pipeline *p = s->pipelines[i];
            if (!p->deleted && p->compiled != NULL &&
                seldon_pipeline_dependency_count(p->compiled) > 0)
                pipeline_refresh(s, p);
        }
        if (s->pl_changes == before)
            return;
    }
}

void sdn_sch_pipelines_refresh(seldon_sched *s)
{
    uint32_t i;
    s->pl_check = 0;
    for (i = 0; i < s->npipelines; i++)
        pipeline_refresh(s, s->pipelines[i]);
    readers_settle(s);
}

/* --- Compiling ---------------------------------------------------------------- */

typedef struct prep_ctx {
    seldon_sched *s;
    const seldon_manifest *mf;
    seldon_pipeline **out;
} prep_ctx;

static int stored_lookup(const seldon_pipeline **out, void *ud, const char *name)
{
    const sch_pipeline *p = sdn_sch_pipeline_find(ud, name);
    if (p == NULL || p->deleted || p->compiled == NULL)
        return SELDON_ENOTFOUND;
    *out = p->compiled;
    return 0;
}

/* The manifest's pipelines first (one not compiled yet is not found: a later pass retries). */
static int prep_lookup(const seldon_pipeline **out, void *ud, const char *name)
{
    prep_ctx *c = ud;
    size_t i, n = seldon_manifest_count(c->mf);
    for (i = 0; i < n; i++) {
        const seldon_resource *r = seldon_manifest_at(c->mf, i);
        if (r->kind == SELDON_KIND_PIPELINE && strcmp(r->name, name) == 0) {
            if (c->out[i] == NULL)
                return SELDON_ENOTFOUND;
            *out = c->out[i];
            return 0;
        }
    }
    return stored_lookup(out, c->s, name);
}

/*
 * Whether pipeline p, by what it reads, reads itself: pipelines reading each
 * other in a ring would pass every record round it for ever. The path, when
 * one is found, goes in ring ("p -> q -> p").
 */
static int reads_itself(prep_ctx *c, const seldon_pipeline *p, char *ring, size_t cap)
{
    const seldon_pipeline **stack = NULL, **seen = NULL;
    uint32_t *from = NULL;
    size_t ns = 0, nseen = 0, max = 1 + c->s->npipelines + seldon_manifest_count(c->mf), i, k;
    int found = 0;
    stack = sdn_calloc(max, sizeof(*stack));
    seen = sdn_calloc(max, sizeof(*seen));
    from = sdn_calloc(max, sizeof(*from));
    if (stack == NULL || seen == NULL || from == NULL)
        goto out; /* the engine's own guards remain */
    /* A search over what p reads, keeping for each pipeline seen where it was reached from. */
    seen[nseen] = p;
    from[nseen++] = UINT32_MAX;
    stack[ns++] = p;
    while (ns > 0 && !found) {
        const seldon_pipeline *q = stack[--ns];
        size_t qi = 0;
        while (qi < nseen && seen[qi] != q)
            qi++;
        for (k = 0; k < seldon_pipeline_dependency_count(q) && !found; k++) {
            const char *dn = seldon_pipeline_dependency(q, k);
            const seldon_pipeline *d = NULL;
            if (strcmp(dn, seldon_pipeline_name(p)) == 0) {
                /* Found: the path back from q to p, written p -> ... -> q -> p. */
                const char *names[64];
                size_t nn = 0, at = qi, len = 0;
                while (at != UINT32_MAX && nn < 64) {
                    names[nn++] = seldon_pipeline_name(seen[at]);
                    at = from[at];
                }
                ring[0] = '\0';
                for (i = nn; i > 0 && len < cap; i--)
                    len += (size_t)snprintf(ring + len, cap - len, "%s -> ", names[i - 1]);
                if (len < cap)
                    snprintf(ring + len, cap - len, "%s", seldon_pipeline_name(p));
                found = 1;
                break;
            }
            if (prep_lookup(&d, c, dn) != 0 || d == NULL)
                continue;
            for (i = 0; i < nseen && seen[i] != d; i++)
                ;
            if (i < nseen || nseen == max)
                continue;
            seen[nseen] = d;
            from[nseen++] = (uint32_t)qi;
            stack[ns++] = d;
        }
    }
out:
    sdn_free(stack);
    sdn_free(seen);
    sdn_free(from);
    return found;
}

int sdn_sch_pipelines_prepare(seldon_sched *s, const seldon_manifest *mf, seldon_pipeline **out)
{
    prep_ctx c = {s, mf, out};
    size_t i, n = seldon_manifest_count(mf), todo = 0;
    int progress = 1, rc = 0;

    for (i = 0; i < n; i++) {
        out[i] = NULL;
        todo += seldon_manifest_at(mf, i)->kind == SELDON_KIND_PIPELINE;
    }
    /* Passes until nothing more compiles: a pipeline may read one later in the manifest. */
    while (todo > 0 && progress) {
        progress = 0;
        for (i = 0; i < n; i++) {
            const seldon_resource *r = seldon_manifest_at(mf, i);
            if (r->kind != SELDON_KIND_PIPELINE || out[i] != NULL)
                continue;
            if (seldon_pipeline_compile(&out[i], r->name, &r->spec.pipeline, prep_lookup, &c) ==
                0) {
                todo--;
                progress = 1;
            } else {
                out[i] = NULL;
            }
        }
    }
    if (todo == 0) {
        char ring[256];
        for (i = 0; i < n && rc == 0; i++) {
            const seldon_resource *r = seldon_manifest_at(mf, i);
            if (r->kind != SELDON_KIND_PIPELINE || !reads_itself(&c, out[i], ring, sizeof(ring)))
                continue;
            rc = sdn_error(SELDON_EINVAL,
                           "document %zu (Pipeline \"%s\"): pipeline \"%s\": spec.input: "
                           "pipelines would read each other in a ring (%s)",
                           r->document, r->name, r->name, ring);
        }
        if (rc == 0)
            return 0;
        for (i = 0; i < n; i++) {
            seldon_pipeline_free(out[i]);
            out[i] = NULL;
        }
        return rc;
    }
    /* The first that does not compile, again for its message. */
    for (i = 0; i < n; i++) {
        const seldon_resource *r = seldon_manifest_at(mf, i);
        seldon_pipeline *tmp = NULL;
        if (r->kind != SELDON_KIND_PIPELINE || out[i] != NULL)
            continue;
        rc = seldon_pipeline_compile(&tmp, r->name, &r->spec.pipeline, prep_lookup, &c);
        seldon_pipeline_free(tmp);
        if (rc == 0)
            rc = sdn_error(SELDON_EINVAL, "pipeline \"%s\": reads a pipeline that does not compile",
                           r->name);
        sdn_error_prefix(rc, "document %zu (Pipeline \"%s\")", r->document, r->name);
        break;
    }
    for (i = 0; i < n; i++) {
        seldon_pipeline_free(out[i]);
        out[i] = NULL;
    }
    return rc;
}

/* --- Apply and unload ----------------------------------------------------------- */

static int resource_put(seldon_sched *s, sch_pipeline *p, int live)
{
    char key[SELDON_MANIFEST_NAME_MAX + 8];
    snprintf(key, sizeof(key), "P:%s", p->name);
    return sdn_sch_resource_put(s, key, live ? p->spec : NULL, live ? p->spec_len : 0, live);
}

/* Compiles again the live pipelines that read p (its steps may have changed). */
static void dependents_recompile(seldon_sched *s, const sch_pipeline *p)
{
    uint32_t i;
    size_t k;
    for (i = 0; i < s->npipelines; i++) {
        sch_pipeline *q = s->pipelines[i];
        seldon_manifest *mf = NULL;
        seldon_pipeline *c = NULL;
        int reads = 0;
        if (q == p || q->deleted || q->compiled == NULL)
            continue;
        for (k = 0; k < seldon_pipeline_dependency_count(q->compiled); k++)
            reads |= strcmp(seldon_pipeline_dependency(q->compiled, k), p->name) == 0;
        if (!reads)
            continue;
        if (seldon_manifest_parse(&mf, q->spec, q->spec_len, "state") == 0 &&
            seldon_manifest_count(mf) == 1 &&
            seldon_pipeline_compile(&c, q->name, &seldon_manifest_at(mf, 0)->spec.pipeline,
                                    stored_lookup, s) == 0) {
            seldon_pipeline_free(q->compiled);
            q->compiled = c;
        } else {
            seldon_pipeline_free(q->compiled);
            q->compiled = NULL;
            waiting_clear(q);
            q->models_ready = 0;
            pipeline_state(s, q, SCH_P_FAILED, seldon_last_error());
        }
        seldon_manifest_free(mf);
    }
}

int sdn_sch_pipeline_apply(seldon_sched *s, const seldon_resource *res, seldon_pipeline *compiled,
                           uint32_t *out_version)
{
    sch_pipeline *p = NULL;
    char *spec = NULL;
    size_t len;
    int rc;

    *out_version = 0;
    if ((rc = pipeline_get(&p, s, res->name)) != 0)
        goto fail;
    s->scratch.len = 0;
    if ((rc = seldon_resource_serialize(&s->scratch, res)) != 0)
        goto fail;
    len = s->scratch.len;
    if (!p->deleted && p->compiled != NULL && p->spec_len == len &&
        memcmp(p->spec, s->scratch.data, len) == 0) {
        /* The same spec: nothing changes. */
        seldon_pipeline_free(compiled);
        *out_version = p->version;
        return 0;
    }
    if ((spec = sdn_strndup((const char *)s->scratch.data, len)) == NULL) {
        rc = sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        goto fail;
    }
    sdn_free(p->spec);
    p->spec = spec;
    p->spec_len = len;
    seldon_pipeline_free(p->compiled);
    p->compiled = compiled;
    if (p->deleted)
        s->routes_changed = 1; /* its route "<p>.pipeline" comes */
    p->deleted = 0;
    p->version++;
    p->models_ready = 0;
    waiting_clear(p);
    if ((rc = resource_put(s, p, 1)) != 0)
        return rc;
    *out_version = p->version;
    p->state = SCH_P__COUNT; /* so that Create is an event even when it was the state */
    pipeline_state(s, p, SCH_P_CREATE, NULL);
    dependents_recompile(s, p);
    pipeline_refresh(s, p);
    readers_settle(s);
    return 0;
fail:
    seldon_pipeline_free(compiled);
    return rc;
}

int sdn_sch_pipeline_unload(seldon_sched *s, const char *name)
{
    sch_pipeline *p = sdn_sch_pipeline_find(s, name);
    uint32_t i;
    size_t k;
    int rc;
    if (p == NULL || p->deleted)
        return sdn_error(SELDON_ENOTFOUND, "Pipeline \"%s\" not found", name);
    for (i = 0; i < s->npipelines; i++) {
        const sch_pipeline *q = s->pipelines[i];
        if (q == p || q->deleted || q->compiled == NULL)
            continue;
        for (k = 0; k < seldon_pipeline_dependency_count(q->compiled); k++)
            if (strcmp(seldon_pipeline_dependency(q->compiled, k), name) == 0)
                return sdn_error(SELDON_ESTATE,
                                 "Pipeline \"%s\": pipeline \"%s\" reads it "
                                 "(spec.input.externalInputs or externalTriggers): unload that "
                                 "one first",
                                 name, q->name);
    }
    if ((rc = resource_put(s, p, 0)) != 0)
        return rc;
    pipeline_state(s, p, SCH_P_TERMINATING, NULL);
    p->deleted = 1;
    s->routes_changed = 1; /* its route goes */
    p->models_ready = 0;
    waiting_clear(p);
    seldon_pipeline_free(p->compiled);
    p->compiled = NULL;
    pipeline_state(s, p, SCH_P_TERMINATED, NULL);
    readers_settle(s);
    return 0;
}

/* --- Reload ------------------------------------------------------------------- */

int sdn_sch_pipeline_loaded(seldon_sched *s, const char *name, const char *json, size_t len,
                            uint32_t version)
{
    sch_pipeline *p = NULL;
    char *spec;
    int rc;
    if ((rc = pipeline_get(&p, s, name)) != 0)
        return rc;
    if ((spec = sdn_strndup(json, len)) == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    sdn_free(p->spec);
    p->spec = spec;
    p->spec_len = len;
    p->version = version;
    p->deleted = 0;
    s->routes_changed = 1;
    p->state = SCH_P_CREATE;
    return 0;
}

static int compile_stored(seldon_pipeline **out, seldon_sched *s, const sch_pipeline *p)
{
    seldon_manifest *mf = NULL;
    int rc = seldon_manifest_parse(&mf, p->spec, p->spec_len, "state store");
    *out = NULL;
    if (rc == 0 && (seldon_manifest_count(mf) != 1 ||
                    seldon_manifest_at(mf, 0)->kind != SELDON_KIND_PIPELINE ||
                    strcmp(seldon_manifest_at(mf, 0)->name, p->name) != 0))
        rc = sdn_error(SELDON_EPARSE, "state store: record \"P:%s\" is not that Pipeline", p->name);
    if (rc == 0)
        rc = seldon_pipeline_compile(out, p->name, &seldon_manifest_at(mf, 0)->spec.pipeline,
                                     stored_lookup, s);
    seldon_manifest_free(mf);
    return rc;
}

void sdn_sch_pipelines_reload_all(seldon_sched *s)
{
    uint32_t i;
    int progress = 1;
    while (progress) {
        progress = 0;
        for (i = 0; i < s->npipelines; i++) {
            sch_pipeline *p = s->pipelines[i];
            seldon_pipeline *c = NULL;
            if (p->deleted || p->compiled != NULL)
                continue;
            if (compile_stored(&c, s, p) == 0) {
                p->compiled = c;
                progress = 1;
            }
        }
    }
    for (i = 0; i < s->npipelines; i++) {
        sch_pipeline *p = s->pipelines[i];
        seldon_pipeline *c = NULL;
        if (p->deleted)
            continue;
        if (p->compiled == NULL) {
            compile_stored(&c, s, p);
            seldon_pipeline_free(c);
            sdn_log(SELDON_LOG_ERROR, "scheduler: pipeline \"%s\" does not compile: %s", p->name,
                    seldon_last_error());
            pipeline_state(s, p, SCH_P_FAILED, seldon_last_error());
            continue;
        }
        pipeline_refresh(s, p);
    }
    readers_settle(s);
    s->pl_check = 0;
}

void sdn_sch_pipelines_free(seldon_sched *s)
{
    uint32_t i;
    for (i = 0; i < s->npipelines; i++) {
        sch_pipeline *p = s->pipelines[i];
        waiting_clear(p);
        seldon_pipeline_free(p->compiled);
        sdn_free(p->spec);
        sdn_free(p->reason);
        sdn_free(p->name);
        sdn_free(p);
    }
    sdn_free(s->pipelines);
    s->pipelines = NULL;
    s->npipelines = 0;
    sdn_sch_map_free(&s->pipelines_by_name);
}

/* --- For hosts ------------------------------------------------------------------- */

static int live(sch_pipeline **out, seldon_sched *sched, const char *name)
{
    sch_pipeline *p;
    if (sched == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "sched_pipeline: NULL argument");
    p = sdn_sch_pipeline_find(sched, name);
    if (p == NULL || p->deleted || p->compiled == NULL)
        return sdn_error(SELDON_ENOTFOUND, "Pipeline \"%s\" not found", name);
    *out = p;
    return 0;
}

int seldon_sched_pipeline_spec(const char **out_spec, size_t *out_len, uint32_t *out_version,
                               int32_t *out_ready, seldon_sched *sched, const char *name)
{
    sch_pipeline *p = NULL;
    int rc = live(&p, sched, name);
    if (rc != 0)
        return rc;
    if (out_spec)
        *out_spec = p->spec;
    if (out_len)
        *out_len = p->spec_len;
    if (out_version)
        *out_version = p->version;
    if (out_ready)
        *out_ready = p->state == SCH_P_READY;
    return 0;
}

int seldon_sched_pipeline_get(const seldon_pipeline **out, uint32_t *out_version,
                              int32_t *out_ready, seldon_sched *sched, const char *name)
{
    sch_pipeline *p = NULL;
    int rc = live(&p, sched, name);
    if (rc != 0)
        return rc;
    if (out)
        *out = p->compiled;
    if (out_version)
        *out_version = p->version;
    if (out_ready)
        *out_ready = p->state == SCH_P_READY;
    return 0;
}
