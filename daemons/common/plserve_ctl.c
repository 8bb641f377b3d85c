/*
 * The control side of pipeline serving (plserve.h): the pipelines' set,
 * compiled by sdp_sync() in the order of what reads what and posted to every
 * ingress loop as a change; the readiness the control side gives; sdp_new()
 * and sdp_free().
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "plserve_int.h"
#include "sdd.h"

/* ----------------------------------------------------------------- set-up */

static int lookup(const seldon_pipeline **out, void *user_data, const char *name)
{
    sdp *s = user_data;
    size_t i;
    for (i = 0; i < s->ctl_n; i++)
        if (strcmp(s->ctl_tab[i].name, name) == 0) {
            *out = s->ctl_tab[i].pl;
            return 0;
        }
    return SELDON_ENOTFOUND;
}

/*
 * A change of the pipelines served, posted to every ingress loop in turn. The last loop
 * through frees the references the control side gave up.
 */
typedef struct pl_change {
    sdp *s;
    atomic_int left;
    char **remove;
    size_t nremove;
    seldon_pipeline **add; /* borrowed from the control registry, which holds them */
    size_t nadd;
    seldon_pipeline **drop; /* references released once every loop is through */
    size_t ndrop;
} pl_change;

static void change_free(pl_change *c)
{
    size_t i;
    for (i = 0; i < c->nremove; i++)
        sdd_free(c->remove[i]);
    for (i = 0; i < c->ndrop; i++)
        seldon_pipeline_free(c->drop[i]);
    sdd_free(c->remove);
    sdd_free(c->add);
    sdd_free(c->drop);
    sdd_free(c);
}

static void change_release(pl_change *c)
{
    if (atomic_fetch_sub(&c->left, 1) == 1)
        change_free(c);
}

static void loop_forget(sdp_loop *p, const char *name)
{
    size_t i;
    for (i = 0; i < p->npls; i++)
        if (strcmp(seldon_pipeline_name(p->pls[i]), name) == 0) {
            p->pls[i] = p->pls[--p->npls];
            return;
        }
}

/* On an ingress loop: removals (readers first), then additions (what they read first). */
static void change_apply(void *arg)
{
    pl_change *c = arg;
    sdp_loop *p = sdp_i_cur(c->s);
    size_t i, done, left;
    char *dn = NULL;
    if (p == NULL || (dn = sdd_calloc(c->nremove + c->nadd + 1, 1)) == NULL) {
        change_release(c);
        return;
    }
    for (left = c->nremove, done = 1; left > 0 && done;) {
        done = 0;
        for (i = 0; i < c->nremove; i++) {
            if (dn[i])
                continue;
            if (seldon_pipeline_engine_remove(p->eng, c->remove[i], sdp_mono_ns()) == SELDON_ESTATE)
                continue;
            loop_forget(p, c->remove[i]);
            dn[i] = 1;
            done = 1;
            left--;
        }
    }
    memset(dn, 0, c->nremove + c->nadd + 1);
    if (p->npls + c->nadd > p->cap) {
        size_t cap = (p->npls + c->nadd) * 2 + 8;
        const seldon_pipeline **np = sdd_realloc(p->pls, cap * sizeof(*np));
        if (np != NULL) {
            p->pls = np;
            p->cap = cap;
        }
    }
    for (left = c->nadd, done = 1; left > 0 && done && p->npls + c->nadd <= p->cap;) {
        done = 0;
        for (i = 0; i < c->nadd; i++) {
            int rc;
            if (dn[i])
                continue;
            rc = seldon_pipeline_engine_add(p->eng, c->add[i]);
            if (rc == SELDON_EINVAL)
                continue; /* what it reads comes later in this change */
            if (rc == 0)
                p->pls[p->npls++] = c->add[i];
            else if (p->loop == 0)
                sdd_log(SELDON_LOG_WARN, "pipeline %s: %s", seldon_pipeline_name(c->add[i]),
                        seldon_last_error());
            dn[i] = 1;
            done = 1;
            left--;
        }
    }
    if (left > 0 && p->loop == 0)
        sdd_log(SELDON_LOG_WARN, "%zu pipeline(s) could not be added: %s", left,
                seldon_last_error());
    sdd_free(dn);
    sdp_i_pump(p);
    change_release(c);
}

static ctl_ent *ctl_find(sdp *s, const char *name)
{
    size_t i;
    for (i = 0; i < s->ctl_n; i++)
        if (strcmp(s->ctl_tab[i].name, name) == 0)
            return &s->ctl_tab[i];
    return NULL;
}

static void set_ready(sdp *s, const sdp_spec *specs, size_t n)
{
    ready_ent *r = n > 0 ? sdd_calloc(n, sizeof(*r)) : NULL;
    size_t i, k = 0;
    for (i = 0; r != NULL && i < n; i++)
        if (specs[i].ready >= 0 && strlen(specs[i].name) <= SELDON_ROUTES_NAME_MAX) {
            snprintf(r[k].name, sizeof(r[k].name), "%s", specs[i].name);
            if (specs[i].ready == 0 && specs[i].why != NULL)
                snprintf(r[k].why, sizeof(r[k].why), "%s", specs[i].why);
            r[k++].ready = specs[i].ready;
        }
    pthread_mutex_lock(&s->ready_mu);
    sdd_free(s->ready);
    s->ready = r;
    s->nready = k;
    pthread_mutex_unlock(&s->ready_mu);
}

size_t sdp_count(const sdp *s)
{
    return s->ctl_n;
}

int sdp_sync(sdp *s, const sdp_spec *specs, size_t n, sdp_spec_fn spec_fn, void *spec_data)
{
    pl_change *c = NULL;
    size_t i, k, progress;
    int changed = 0, has_ready = 0;

    for (i = 0; i < n; i++)
        has_ready |= specs[i].ready >= 0;
    if (has_ready || s->nready > 0)
        set_ready(s, specs, n);
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        goto out;
    c->s = s;
    c->remove = sdd_calloc(n + s->ctl_n + 1, sizeof(*c->remove));
    c->add = sdd_calloc(n + 1, sizeof(*c->add));
    c->drop = sdd_calloc(n + s->ctl_n + 1, sizeof(*c->drop));
    if (c->remove == NULL || c->add == NULL || c->drop == NULL)
        goto out;
    if (s->ctl_cap < s->ctl_n + n) {
        size_t cap = s->ctl_n + n + 8;
        ctl_ent *t = sdd_realloc(s->ctl_tab, cap * sizeof(*t));
        if (t == NULL)
            goto out;
        s->ctl_tab = t;
        s->ctl_cap = cap;
    }
    /* Withdrawn: gone, or replaced by a new version. */
    for (k = 0; k < s->ctl_n;) {
        int keep = 0;
        for (i = 0; i < n && !keep; i++)
            keep = strcmp(specs[i].name, s->ctl_tab[k].name) == 0 &&
                   specs[i].version == s->ctl_tab[k].version;
        if (keep) {
            k++;
            continue;
        }
        sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: withdrawn from the ingress", s->ctl_tab[k].name,
                s->ctl_tab[k].version);
        c->remove[c->nremove++] = s->ctl_tab[k].name;
        c->drop[c->ndrop++] = s->ctl_tab[k].pl;
        s->ctl_tab[k] = s->ctl_tab[--s->ctl_n];
        changed = 1;
    }
    /* Readers of a withdrawn pipeline go too: compiled again below against its new version. */
    for (progress = 1; progress;) {
        progress = 0;
        for (k = 0; k < s->ctl_n;) {
            size_t d, r = 0;
            int reads = 0;
            for (d = 0; d < seldon_pipeline_dependency_count(s->ctl_tab[k].pl) && !reads; d++)
                for (r = 0; r < c->nremove && !reads; r++)
                    reads =
                        strcmp(seldon_pipeline_dependency(s->ctl_tab[k].pl, d), c->remove[r]) == 0;
            if (!reads) {
                k++;
                continue;
            }
            sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: withdrawn, to read the new %s",
                    s->ctl_tab[k].name, s->ctl_tab[k].version, c->remove[r - 1]);
            c->remove[c->nremove++] = s->ctl_tab[k].name;
            c->drop[c->ndrop++] = s->ctl_tab[k].pl;
            s->ctl_tab[k] = s->ctl_tab[--s->ctl_n];
            progress = 1;
        }
    }
    /* New: compiled here, in the order of what they read. */
    for (progress = 1; progress;) {
        progress = 0;
        for (i = 0; i < n; i++) {
            const char *spec = specs[i].spec;
            size_t len = specs[i].spec_len;
            seldon_manifest *m = NULL;
            seldon_pipeline *pl = NULL;
            const seldon_resource *res;
            if (ctl_find(s, specs[i].name) != NULL)
                continue;
            if (spec == NULL &&
                (spec_fn == NULL || spec_fn(spec_data, specs[i].name, &spec, &len) != 0))
                continue;
            if (seldon_manifest_parse(&m, spec, len, specs[i].name) != 0)
                continue;
            res = seldon_manifest_at(m, 0);
            if (res != NULL && res->kind == SELDON_KIND_PIPELINE &&
                seldon_pipeline_compile(&pl, res->name, &res->spec.pipeline, lookup, s) == 0) {
                s->ctl_tab[s->ctl_n].name = sdd_strndup(specs[i].name, strlen(specs[i].name));
                s->ctl_tab[s->ctl_n].version = specs[i].version;
                s->ctl_tab[s->ctl_n].pl = pl;
                if (s->ctl_tab[s->ctl_n].name == NULL) {
                    seldon_pipeline_free(pl);
                } else {
                    c->add[c->nadd++] = pl;
                    s->ctl_n++;
                    progress = 1;
                    changed = 1;
                    sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: served (%zu step(s))", specs[i].name,
                            specs[i].version, seldon_pipeline_step_count(pl));
                }
            }
            seldon_manifest_free(m);
        }
    }
    if (!changed)
        goto out;
    atomic_store(&c->left, s->nloops);
    for (i = 0; i < (size_t)s->nloops; i++)
        if (sdl_loops_post(s->loops, (int)i, change_apply, c) != 0)
            change_release(c);
    c = NULL;
out:
    if (c != NULL)
        change_free(c);
    return changed;
}

int sdp_new(sdp **out, sdl_loops *loops, const sdp_config *cfg, const sdp_hooks *hooks,
            void *user_data)
{
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    sdp *s = sdd_calloc(1, sizeof(*s));
    int rc = 0, i;
    *out = NULL;
    if (s == NULL)
        return SELDON_ENOMEM;
    s->loops = loops;
    s->nloops = sdl_loops_count(loops);
    s->cfg = *cfg;
    s->hooks = *hooks;
    s->ud = user_data;
    pthread_mutex_init(&s->async_mu, NULL);
    pthread_mutex_init(&s->ready_mu, NULL);
    s->async_cap = cfg->async_max;
    s->async_tab = sdd_calloc(s->async_cap ? s->async_cap : 1, sizeof(*s->async_tab));
    s->pl = sdd_calloc((size_t)s->nloops, sizeof(*s->pl));
    if (s->async_tab == NULL || s->pl == NULL) {
        rc = SELDON_ENOMEM;
        goto out;
    }
    o.timeout_ms = (int64_t)cfg->timeout_ms;
    o.max_requests = cfg->max_requests;
    for (i = 0; i < s->nloops; i++) {
        sdp_loop *p = sdd_calloc(1, sizeof(*p));
        if (p == NULL) {
            rc = SELDON_ENOMEM;
            goto out;
        }
        s->pl[i] = p;
        p->s = s;
        p->loop = i;
        p->armed = INT64_MAX;
        rc = seldon_pipeline_engine_new(&p->eng, NULL, 0, &o);
        if (rc != 0)
            goto out;
        uv_timer_init(sdl_loops_loop(loops, i), &p->timer);
        p->timer.data = p;
    }
out:
    if (rc != 0) {
        for (i = 0; s->pl != NULL && i < s->nloops; i++)
            if (s->pl[i] != NULL && s->pl[i]->eng != NULL) /* its timer closes with its loop */
                uv_close((uv_handle_t *)&s->pl[i]->timer, NULL);
        return rc; /* freed by sdp_free() once the loops closed the timers */
    }
    *out = s;
    return 0;
}

void sdp_close_loop(sdp *s, int i)
{
    if (s == NULL || i < 0 || i >= s->nloops || s->pl[i] == NULL)
        return;
    uv_close((uv_handle_t *)&s->pl[i]->timer, NULL);
}

void sdp_free(sdp *s)
{
    int i;
    size_t k;
    if (s == NULL)
        return;
    for (i = 0; s->pl != NULL && i < s->nloops; i++) {
        sdp_loop *p = s->pl[i];
        if (p == NULL)
            continue;
        for (k = 0; k < NBUCKETS; k++)
            while (p->buckets[k] != NULL) {
                plw *w = p->buckets[k];
                p->buckets[k] = w->next;
                if (w->kind == W_STREAM) /* its stream closed with the loop: our reference */
                    sdp_i_scall_unref(w->sc);
                sdp_i_waiter_free(w);
            }
        seldon_pipeline_engine_free(p->eng);
        sdd_free(p->pls);
        sdd_free(p);
    }
    sdd_free(s->pl);
    for (k = 0; k < s->ctl_n; k++) {
        seldon_pipeline_free(s->ctl_tab[k].pl);
        sdd_free(s->ctl_tab[k].name);
    }
    sdd_free(s->ctl_tab);
    for (k = 0; k < s->async_cap; k++)
        seldon_buf_free(&s->async_tab[k].body);
    sdd_free(s->async_tab);
    sdd_free(s->ready);
    pthread_mutex_destroy(&s->async_mu);
    pthread_mutex_destroy(&s->ready_mu);
    sdd_free(s);
}
