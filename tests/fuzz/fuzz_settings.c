/*
 * libFuzzer target for model-settings.json: the input is the file's text,
 * parsed as the repository parses it for a model folder. Whatever parses
 * must hold what the loader relies on: a name, an implementation, a uri
 * inside the model folder, a batch size of at least one, declared tensors
 * with known datatypes and shapes of -1 or more. A failure carries a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/repo.h"

#define FUZZ_DIR "/nonexistent-seldon-fuzz/model"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s (%s)\n", what, seldon_last_error());
    abort();
}

static void check_tensors(const sdn_tmetas *ms)
{
    uint32_t i, k;
    for (i = 0; i < ms->n; i++) {
        const sdn_tmeta *m = &ms->items[i];
        if (m->name.p == NULL || !sdn_dt_valid(m->datatype) || m->ndim > SDN_MAX_NDIM)
            fail("a declared tensor without a name, datatype or with too many dimensions");
        for (k = 0; k < m->ndim; k++)
            if (m->shape[k] < -1)
                fail("a declared dimension below -1");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sdn_arena a;
    sdn_settings s;
    int rc;

    sdn_arena_init(&a, NULL, 0);
    seldon_clear_error();
    rc = sdn_settings_parse(&s, &a, FUZZ_DIR, "fallback", "", (const char *)data, size,
                            FUZZ_DIR "/model-settings.json");
    if (rc == 0) {
        if (s.name == NULL || s.name[0] == '\0' || s.implementation == NULL ||
            s.implementation[0] == '\0')
            fail("parsed without a name or an implementation");
        if (s.uri == NULL || strncmp(s.uri, FUZZ_DIR, strlen(FUZZ_DIR)) != 0 ||
            (s.uri[strlen(FUZZ_DIR)] != '\0' && s.uri[strlen(FUZZ_DIR)] != '/'))
            fail("a uri outside the model folder was accepted");
        if (strstr(s.uri, "/../") != NULL)
            fail("a uri with '..' was accepted");
        if (s.max_batch_size < 1 || s.max_batch_time_ns < 0 || s.extra_json == NULL ||
            s.version == NULL)
            fail("batching or parameters out of range");
        check_tensors(&s.inputs);
        check_tensors(&s.outputs);
    } else if (seldon_last_error()[0] == '\0') {
        fail("a failure without a message");
    }
    sdn_arena_release(&a);
    return 0;
}
