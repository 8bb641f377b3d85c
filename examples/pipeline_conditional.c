/*
 * pipeline-conditional: runs Seldon's conditional pipeline inside this
 * process, with the builtin models of a model repository.
 *
 *   pipeline-conditional MODELS_DIR PIPELINE_YAML
 *
 * MODELS_DIR holds the MLServer folders of conditional, mul10 and add10
 * (examples/models); PIPELINE_YAML the Pipeline (examples/pipeline_conditional.yaml).
 * Prints one line per request: CHOICE 0 ends in mul10, CHOICE 1 in add10.
 *
 * The host (this program) owns time and threads: it passes now_ns in, and
 * since the builtin models answer at once, every request ends inside the
 * call that pushes it.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <seldon/seldon.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)n + 1)) != NULL) {
        *len = fread(text, 1, (size_t)n, f);
        text[*len] = '\0';
    }
    fclose(f);
    return text;
}

/* Prints "<id>: <tensor> <datatype> [v, ...]" or "<id>: error: <text>". */
static void print_result(void *user_data, const seldon_pipeline_result *r)
{
    seldon_tensor t;
    uint64_t i;
    int *failures = user_data;
    if (r->status < 0) {
        printf("%.*s: error: %s\n", (int)r->request_id_len, r->request_id, r->error);
        ++*failures;
        return;
    }
    if (seldon_msg_tensor(&t, r->response, 0) < 0 || t.datatype != SELDON_DT_FP32) {
        printf("%.*s: error: unexpected answer\n", (int)r->request_id_len, r->request_id);
        ++*failures;
        return;
    }
    printf("%.*s: %s FP32 [", (int)r->request_id_len, r->request_id, t.name);
    for (i = 0; i < t.count; i++)
        printf("%s%g", i ? ", " : "", (double)((const float *)t.data)[i]);
    printf("]\n");
}

/* The conditional model's inputs: CHOICE, INPUT0 = [1,2,3,4], INPUT1 = [5,6,7,8]. */
static int fill_inputs(seldon_msg *m, int32_t choice)
{
    static const float in0[4] = {1, 2, 3, 4}, in1[4] = {5, 6, 7, 8};
    const int64_t one = 1, four = 4;
    int rc = seldon_msg_add_tensor(NULL, m, "CHOICE", 6, SELDON_DT_INT32, &one, 1, &choice,
                                   sizeof(choice), SELDON_TENSOR_COPY);
    if (rc == 0)
        rc = seldon_msg_add_tensor(NULL, m, "INPUT0", 6, SELDON_DT_FP32, &four, 1, in0, sizeof(in0),
                                   SELDON_TENSOR_COPY);
    if (rc == 0)
        rc = seldon_msg_add_tensor(NULL, m, "INPUT1", 6, SELDON_DT_FP32, &four, 1, in1, sizeof(in1),
                                   SELDON_TENSOR_COPY);
    return rc;
}

int main(int argc, char **argv)
{
    seldon_repo_options ro = SELDON_REPO_OPTIONS_INIT;
    seldon_pipeline_host_options ho = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_repo *repo = NULL;
    seldon_pipeline_host *host = NULL;
    char *yaml = NULL;
    size_t len = 0;
    int failures = 0, status = 1;
    int32_t choice;

    if (argc != 3 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: pipeline-conditional MODELS_DIR PIPELINE_YAML\n"
                "Runs the conditional pipeline in process with the repository's builtin models\n"
                "and prints each request's answer.\n");
        return argc == 2 ? 0 : 2;
    }
    if ((yaml = read_file(argv[2], &len)) == NULL) {
        fprintf(stderr, "pipeline-conditional: cannot read %s\n", argv[2]);
        goto out;
    }
    /* The models: conditional, mul10 and add10 from their model-settings.json. */
    ro.root = argv[1];
    if (seldon_repo_new(&repo, &ro) < 0 || seldon_repo_load(repo, "conditional") < 0 ||
        seldon_repo_load(repo, "mul10") < 0 || seldon_repo_load(repo, "add10") < 0)
        goto fail;
    /* The pipeline: its steps call the repository's models of the same names. */
    ho.repo = repo;
    ho.on_result = print_result;
    ho.user_data = &failures;
    if (seldon_pipeline_host_new(&host, yaml, len, &ho) < 0 || seldon_pipeline_host_check(host) < 0)
        goto fail;

    for (choice = 0; choice <= 1; choice++) {
        char id[32];
        seldon_msg *in = seldon_pipeline_host_msg(host);
        if (in == NULL || fill_inputs(in, choice) < 0) {
            seldon_msg_free(in);
            goto fail;
        }
        snprintf(id, sizeof(id), "choice-%d", (int)choice);
        /* Takes the message; the answer is printed by print_result before this returns. */
        if (seldon_pipeline_host_push(host, NULL, id, strlen(id), NULL, 0, in, 0, now_ns()) < 0)
            goto fail;
    }

    /* The same, synchronously: the answer comes back to the caller. */
    {
        seldon_msg *in = seldon_pipeline_host_msg(host), *out = NULL;
        seldon_pipeline_result r;
        if (in == NULL || fill_inputs(in, 0) < 0) {
            seldon_msg_free(in);
            goto fail;
        }
        if (seldon_pipeline_host_infer(&out, host, NULL, in, now_ns()) < 0)
            goto fail;
        memset(&r, 0, sizeof(r));
        r.request_id = "infer";
        r.request_id_len = 5;
        r.response = out;
        print_result(&failures, &r);
        seldon_msg_free(out);
    }
    status = failures ? 1 : 0;
    goto out;
fail:
    fprintf(stderr, "pipeline-conditional: %s\n", seldon_last_error());
out:
    seldon_pipeline_host_free(host);
    seldon_repo_free(repo);
    free(yaml);
    return status;
}
