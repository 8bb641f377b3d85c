/*
 * Placement: Seldon's filters and sorters, on indexes.
 *
 * Servers: the pin (spec.server) alone when there is one; deleted servers
 * skipped; servers already holding the model first, then in registration
 * order. Replicas of a server: connected, not draining, every requirement
 * among their capabilities, enough free memory (or already holding this
 * version); ranked by holding this version, holding the model, most free
 * memory, lowest index. The first server with `replicas` such replicas
 * wins; failing that, the one with the most, if at least minReplicas
 * (partial scheduling); failing that, ScheduleFailed with the reason.
 *
 * Cost per version: one pass over the candidate servers' replicas with a
 * few bit tests each, and a bounded insertion into the chosen set.
 */
#include <stdio.h>
#include <string.h>

#include "sched/sched.h"

typedef struct cand {
    sch_replica *r;
    uint8_t holds_v, holds_m;
    int64_t free;
} cand;

/* 1 when a ranks before b. */
static int better(const cand *a, const cand *b)
{
    if (a->holds_v != b->holds_v)
        return a->holds_v > b->holds_v;
    if (a->holds_m != b->holds_m)
        return a->holds_m > b->holds_m;
    if (a->free != b->free)
        return a->free > b->free;
    return a->r->index < b->r->index;
}

int sdn_sch_fits(const sch_replica *r, const sch_version *v)
{
    uint32_t i;
    if (v->pin != NULL && strcmp(v->pin, r->s->name) != 0)
        return 0;
    for (i = 0; i < v->nreqs; i++)
        if (!sch_has_cap(r, v->reqs[i]))
            return 0;
    return 1;
}

static int has_reqs(const sch_replica *r, const sch_version *v)
{
    uint32_t i;
    for (i = 0; i < v->nreqs; i++)
        if (!sch_has_cap(r, v->reqs[i]))
            return 0;
    return 1;
}

/* The version's slot on r blocks a new one (it is on its way out). */
static int slot_blocks(const sch_slot *sl)
{
    return sl->state == SCH_R_UNLOAD_ENVOY_REQUESTED || sl->state == SCH_R_UNLOAD_REQUESTED ||
           sl->state == SCH_R_UNLOADING || sl->state == SCH_R_UNLOAD_FAILED;
}

/*
 * Keeps the best `want` candidates of server sv in out (sorted), returns how
 * many. mark_v / mark_m stamps say which replicas hold the version / model.
 */
static uint32_t server_candidates(cand *out, uint32_t want, const seldon_sched *s,
                                  const sch_server *sv, const sch_version *v, uint32_t ep)
{
    uint32_t j, n = 0;
    (void)s;
    for (j = 0; j < sv->nreplicas; j++) {
        sch_replica *r = sv->replicas[j];
        cand c;
        uint32_t k;
        if (r == NULL || !r->connected || sdn_sch_draining(r) || !has_reqs(r, v))
            continue;
        c.r = r;
        c.holds_v = r->mark_v == ep;
        c.holds_m = r->mark_m == ep;
        c.free = sch_free(r);
        if (c.holds_v) {
            /* Its slot: usable unless it is being unloaded. */
            const sch_slot *sl = NULL;
            for (k = 0; k < v->nslots; k++)
                if (v->slots[k]->r == r)
                    sl = v->slots[k];
            if (sl != NULL && slot_blocks(sl))
                continue;
        } else if (c.free < v->memory) {
            continue;
        }
        /* Insert into the sorted top-`want`. */
        if (n == want && !better(&c, &out[n - 1]))
            continue;
        k = n < want ? n++ : n - 1;
        while (k > 0 && better(&c, &out[k - 1])) {
            out[k] = out[k - 1];
            k--;
        }
        out[k] = c;
    }
    return n;
}

static void fmt_bytes(char *out, size_t cap, int64_t b)
{
    snprintf(out, cap, "%lld", (long long)b);
}

/* Why nothing fits: the requirement no replica has, or where memory is short. */
static void explain(char *out, size_t cap, seldon_sched *s, const sch_version *v,
                    uint32_t best_count, const sch_server *best)
{
    uint32_t i, j, k, connected = 0, fitting_caps = 0, draining = 0;
    const sch_replica *closest = NULL;
    size_t o = 0;
    sch_server *pin = NULL;

    out[0] = '\0';
    if (v->pin != NULL) {
        if (sdn_sch_server_get(&pin, s, v->pin, 0) != 0 || pin->deleted) {
            snprintf(out, cap, "spec.server: no server \"%s\"", v->pin);
            return;
        }
    }
    for (i = 0; i < s->nservers; i++) {
        const sch_server *sv = s->servers[i];
        if ((pin && sv != pin) || sv->deleted)
            continue;
        for (j = 0; j < sv->nreplicas; j++) {
            const sch_replica *r = sv->replicas[j];
            if (r == NULL || !r->connected)
                continue;
            connected++;
            if (!has_reqs(r, v))
                continue;
            if (sdn_sch_draining(r)) {
                draining++;
                continue;
            }
            fitting_caps++;
            if (closest == NULL || sch_free(r) > sch_free(closest))
                closest = r;
        }
    }
    if (connected == 0) {
        if (pin)
            snprintf(out, cap, "spec.server: server \"%s\" has no connected replicas", v->pin);
        else
            snprintf(out, cap, "no server replicas are connected");
        return;
    }
    if (fitting_caps == 0 && draining == 0) {
        /* Which requirements does no replica have at all? */
        o = (size_t)snprintf(out, cap, "%s", pin ? "server " : "no server has ");
        if (pin)
            o += (size_t)snprintf(out + o, cap > o ? cap - o : 0, "\"%s\" (spec.server) lacks ",
                                  v->pin);
        {
            int missing = 0;
            for (k = 0; k < v->nreqs; k++) {
                int any = 0;
                for (i = 0; i < s->nservers && !any; i++) {
                    const sch_server *sv = s->servers[i];
                    if ((pin && sv != pin) || sv->deleted)
                        continue;
                    for (j = 0; j < sv->nreplicas && !any; j++)
                        any = sv->replicas[j] && sv->replicas[j]->connected &&
                              sch_has_cap(sv->replicas[j], v->reqs[k]);
                }
                if (!any && o < cap) {
                    o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", missing ? ", " : "",
                                          s->caps[v->reqs[k]]);
                    missing++;
                }
            }
            if (missing == 0 && o < cap) {
                o += (size_t)snprintf(out + o, cap - o, "all of the requirements [");
                for (k = 0; k < v->nreqs && o < cap; k++)
                    o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", k ? ", " : "",
                                          s->caps[v->reqs[k]]);
                if (o < cap)
                    o += (size_t)snprintf(out + o, cap - o, "]");
            }
            if (o < cap)
                snprintf(out + o, cap - o, " (spec.requirements and spec.modelType)");
        }
        return;
    }
    if (fitting_caps == 0) {
        snprintf(out, cap, "every server replica with the requirements is draining");
        return;
    }
    {
        /* The server that comes closest: most replicas with room, then most with the
           requirements. Is it short of replicas, or of memory? */
        const sch_server *bs = NULL;
        const sch_replica *near = NULL;
        uint32_t bcaps = 0, bmem = 0;
        char need[32], have[32], shortb[32], minr[96];
        (void)best_count;
        (void)best;
        for (i = 0; i < s->nservers; i++) {
            const sch_server *sv = s->servers[i];
            const sch_replica *nr = NULL;
            uint32_t ncaps = 0, nmem = 0;
            if ((pin && sv != pin) || sv->deleted)
                continue;
            for (j = 0; j < sv->nreplicas; j++) {
                const sch_replica *r = sv->replicas[j];
                if (r == NULL || !r->connected || sdn_sch_draining(r) || !has_reqs(r, v))
                    continue;
                ncaps++;
                if (sch_free(r) >= v->memory)
                    nmem++;
                else if (nr == NULL || sch_free(r) > sch_free(nr))
                    nr = r;
            }
            if (ncaps > 0 && (bs == NULL || nmem > bmem || (nmem == bmem && ncaps > bcaps))) {
                bs = sv;
                bcaps = ncaps;
                bmem = nmem;
                near = nr;
            }
        }
        {
            uint32_t wanted = (uint32_t)(v->min_replicas > 0 ? v->min_replicas : v->replicas);
            if (v->min_replicas > 0)
                snprintf(minr, sizeof(minr), "%d replicas, at least %d (spec.minReplicas)",
                         v->replicas, v->min_replicas);
            else
                snprintf(minr, sizeof(minr), "%d replica%s (spec.replicas)", v->replicas,
                         v->replicas == 1 ? "" : "s");
            fmt_bytes(need, sizeof(need), v->memory);
            if (bs == NULL) {
                snprintf(out, cap, "no server replica fits");
            } else if (bcaps < wanted) {
                snprintf(out, cap,
                         "not enough replicas: the model wants %s on one server; server \"%s\" "
                         "has %u with the requirements",
                         minr, bs->name, bcaps);
            } else if (near != NULL) {
                fmt_bytes(have, sizeof(have), sch_free(near));
                fmt_bytes(shortb, sizeof(shortb), v->memory - sch_free(near));
                snprintf(out, cap,
                         "not enough memory: the model needs %s bytes (spec.memory) on %s; on "
                         "server \"%s\" %u replica%s room, the closest is replica %u with %s "
                         "bytes available (%s bytes short)",
                         need, minr, bs->name, bmem, bmem == 1 ? " has" : "s have", near->index,
                         have, shortb);
            } else {
                snprintf(out, cap, "no server replica fits");
            }
        }
    }
}

static int set_place_reason(sch_version *v, const char *reason)
{
    return sdn_sch_set_reason(&v->place_reason, reason);
}

int sdn_sch_schedule(seldon_sched *s, sch_version *v)
{
    uint32_t want, i, j, ep, best_n = 0;
    sch_server *best = NULL, *chosen = NULL;
    cand stackbuf[16], *buf = stackbuf, *bestbuf = NULL, *sel = NULL;
    uint32_t nsel = 0;
    char reason[600];
    int rc = 0;
    sch_model *m = v->m;

    if (v->terminating)
        return 0;
    if (!s->ready) {
        sdn_sch_pending_add(s, v);
        sdn_sch_version_refresh(s, v);
        return 0;
    }
    if (v->replicas <= 0) {
        for (i = v->nslots; i-- > 0;)
            if (i < v->nslots)
                sdn_sch_slot_leave(s, v->slots[i]);
        sdn_sch_pending_remove(s, v);
        set_place_reason(v, NULL);
        sdn_sch_version_refresh(s, v);
        return 0;
    }
    want = (uint32_t)v->replicas;

    /* Stamp the replicas holding this version and the model, and their servers. */
    ep = ++s->epoch;
    for (i = 0; i < m->nversions; i++) {
        sch_version *o = m->versions[i];
        for (j = 0; j < o->nslots; j++) {
            sch_slot *sl = o->slots[j];
            if (o == v)
                sl->r->mark_v = ep;
            sl->r->mark_m = ep;
            sl->r->s->mark = ep;
        }
    }
    if ((size_t)want * 2 > sizeof(stackbuf) / sizeof(stackbuf[0])) {
        buf = sdn_malloc(2 * (size_t)want * sizeof(cand));
        if (buf == NULL)
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    bestbuf = buf + want;

    /* Pass 0: the version's server and servers holding the model; pass 1: the rest. */
    for (i = 0; i < 2 && chosen == NULL; i++) {
        for (j = 0; j < s->nservers; j++) {
            sch_server *sv = s->servers[j];
            uint32_t n;
            if (sv->deleted || (v->pin && strcmp(sv->name, v->pin) != 0))
                continue;
            if ((sv->mark == ep || sv == v->server) != (i == 0))
                continue;
            n = server_candidates(buf, want, s, sv, v, ep);
            if (n >= want) {
                chosen = sv;
                sel = buf;
                nsel = n;
                break;
            }
            if (n > best_n) {
                best_n = n;
                best = sv;
                memcpy(bestbuf, buf, n * sizeof(cand));
            }
        }
    }
    if (chosen == NULL && best != NULL && v->min_replicas > 0 &&
        best_n >= (uint32_t)v->min_replicas) {
        chosen = best;
        sel = bestbuf;
        nsel = best_n;
    }
    if (chosen == NULL) {
        explain(reason, sizeof(reason), s, v, best_n, best);
        set_place_reason(v, reason);
        sdn_sch_pending_add(s, v);
        sdn_sch_version_refresh(s, v);
        goto out;
    }

    /* The target: keep or create a slot on each chosen replica; the others move off. */
    ep = ++s->epoch;
    for (i = 0; i < nsel; i++) {
        sch_replica *r = sel[i].r;
        sch_slot *sl = NULL;
        r->mark_v = ep;
        for (j = 0; j < v->nslots; j++)
            if (v->slots[j]->r == r)
                sl = v->slots[j];
        if (sl != NULL) {
            if (sl->leaving) {
                sl->leaving = 0;
                sdn_sch_mark_model(s, m);
                if (sl->state == SCH_R_DRAINING) {
                    sl->state = SCH_R_UNKNOWN; /* back to Available, announced */
                    sl->last_change = s->now;
                    sdn_sch_event(s, SELDON_KIND_MODEL, m->name, v->number, "Available", NULL,
                                  r->s->name, (int32_t)r->index);
                    sl->state = SCH_R_AVAILABLE;
                }
            }
            continue;
        }
        if ((rc = sdn_sch_slot_new(&sl, s, v, r, SCH_R_LOAD_REQUESTED)) != 0)
            goto out;
    }
    for (j = v->nslots; j-- > 0;) {
        sch_slot *sl;
        if (j >= v->nslots)
            continue;
        sl = v->slots[j];
        if (sl->r->mark_v == ep || sl->leaving)
            continue;
        sl->leaving = 1;
        sdn_sch_mark_model(s, m);
        if (sl->state == SCH_R_AVAILABLE) {
            /* Still serving until the target is: it drains. */
            sl->state = SCH_R_DRAINING;
            sl->last_change = s->now;
            sdn_sch_event(s, SELDON_KIND_MODEL, m->name, v->number, "Draining", NULL,
                          sl->r->s->name, (int32_t)sl->r->index);
        } else {
            sdn_sch_slot_leave(s, sl);
        }
    }
    v->server = chosen;
    sdn_sch_mark_model(s, m);
    if (nsel < want) {
        snprintf(reason, sizeof(reason),
                 "partially scheduled: %u of %u replicas fit on server \"%s\"", nsel, want,
                 chosen->name);
        set_place_reason(v, reason);
        sdn_sch_pending_add(s, v);
    } else {
        set_place_reason(v, NULL);
        sdn_sch_pending_remove(s, v);
    }
    sdn_sch_version_refresh(s, v);
out:
    if (buf != stackbuf)
        sdn_free(buf);
    return rc;
}
