/*
 * Test driver: loads one model from a repository folder through the public
 * repository API, runs the REST JSON inference request read from stdin,
 * and prints the REST JSON response on stdout.
 *
 *   runtime_driver [-t threads] <root> <model> [runtime_path] < request.json
 *
 * Exit 0 with the response; otherwise prints {"stage": "load"|"infer",
 * "code": <SELDON_E*>, "error": "<message>"} and exits 2 (load) or 3 (infer).
 * With -t, the request then runs ROUNDS more times on each of that many
 * threads at once, as a server does with a CONCURRENT runtime; every
 * response must encode to the same bytes as the first (else exit 4).
 * Links the shared libseldon, as the server does, so that plugin runtimes
 * and the host share one copy of it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/repository.h"

#define ROUNDS 50

typedef struct done_state {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int32_t status;
    char message[2048];
} done_state;

/* Runs on whichever thread completes the inference. */
static void on_done(void *user_data, seldon_infer *infer, int32_t status, const char *message)
{
    done_state *d = user_data;

    (void)infer;
    pthread_mutex_lock(&d->lock);
    d->status = status;
    snprintf(d->message, sizeof d->message, "%s", message ? message : "");
    d->done = 1;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static int report(const char *stage, int code, const char *message, int exit_code)
{
    printf("{\"stage\":\"%s\",\"code\":%d,\"error\":", stage, code);
    print_json_string(message);
    printf("}\n");
    return exit_code;
}

static int read_all(seldon_buf *buf, FILE *f)
{
    for (;;) {
        size_t n;
        if (seldon_buf_reserve(buf, 65536) < 0)
            return -1;
        n = fread(buf->data + buf->len, 1, buf->cap - buf->len, f);
        buf->len += n;
        if (n == 0)
            return ferror(f) ? -1 : 0;
    }
}

/*
 * Runs req once on model and appends the encoded response to out. Returns
 * the inference's status (its message in d), or a setup error code.
 */
static int run_once(seldon_buf *out, done_state *d, seldon_model *model, const seldon_msg *req)
{
    seldon_msg *resp = NULL;
    seldon_infer *infer = NULL;
    int rc = seldon_msg_new(&resp, SELDON_MSG_RESPONSE);

    d->done = 0;
    if (rc == 0)
        rc = seldon_infer_new(&infer, req, resp, on_done, d);
    if (rc < 0) {
        snprintf(d->message, sizeof d->message, "%s", seldon_last_error());
        goto out;
    }
    seldon_model_execute(model, &infer, 1);
    pthread_mutex_lock(&d->lock);
    while (!d->done)
        pthread_cond_wait(&d->cond, &d->lock);
    pthread_mutex_unlock(&d->lock);
    rc = d->status;
    if (rc == 0 && (rc = seldon_msg_encode_json(out, NULL, resp, 0)) < 0)
        snprintf(d->message, sizeof d->message, "%s", seldon_last_error());
out:
    seldon_infer_free(infer);
    seldon_msg_free(resp);
    return rc;
}

typedef struct worker {
    pthread_t thread;
    seldon_model *model;
    const seldon_msg *req;
    const seldon_buf *reference;
    int mismatches;
    int failures;
    char message[2048];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    seldon_buf out = SELDON_BUF_INIT;
    done_state d;
    int i;

    memset(&d, 0, sizeof d);
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    for (i = 0; i < ROUNDS; i++) {
        out.len = 0;
        if (run_once(&out, &d, w->model, w->req) != 0) {
            w->failures++;
            snprintf(w->message, sizeof w->message, "%s", d.message);
        } else if (out.len != w->reference->len ||
                   memcmp(out.data, w->reference->data, out.len) != 0) {
            w->mismatches++;
        }
    }
    seldon_buf_free(&out);
    pthread_cond_destroy(&d.cond);
    pthread_mutex_destroy(&d.lock);
    return NULL;
}

int main(int argc, char **argv)
{
    seldon_repo_options opts = SELDON_REPO_OPTIONS_INIT;
    seldon_repo *repo = NULL;
    seldon_model *model = NULL;
    seldon_msg *req = NULL;
    seldon_buf body = SELDON_BUF_INIT, out = SELDON_BUF_INIT;
    worker *workers = NULL;
    done_state d;
    int rc, exit_code = 1, nthreads = 0, i, started = 0;

    if (argc > 2 && strcmp(argv[1], "-t") == 0) {
        nthreads = atoi(argv[2]);
        argv += 2;
        argc -= 2;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: %s [-t threads] <root> <model> [runtime_path] < request.json\n",
                argv[0]);
        return 1;
    }
    memset(&d, 0, sizeof d);
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);

    opts.root = argv[1];
    opts.runtime_path = argc > 3 ? argv[3] : NULL;
    rc = seldon_repo_new(&repo, &opts);
    if (rc < 0) {
        exit_code = report("load", rc, seldon_last_error(), 2);
        goto out;
    }
    rc = seldon_repo_load(repo, argv[2]);
    if (rc == 0)
        rc = seldon_repo_acquire(&model, repo, argv[2], strlen(argv[2]), NULL, 0);
    if (rc < 0) {
        exit_code = report("load", rc, seldon_last_error(), 2);
        goto out;
    }

    if (read_all(&body, stdin) < 0 || seldon_msg_new(&req, SELDON_MSG_REQUEST) < 0) {
        fprintf(stderr, "cannot read the request\n");
        goto out;
    }
    rc = seldon_msg_decode_json(req, body.data, body.len, 0, 0);
    if (rc < 0) {
        exit_code = report("decode", rc, seldon_last_error(), 3);
        goto out;
    }
    rc = run_once(&out, &d, model, req);
    if (rc != 0) {
        exit_code = report("infer", rc, d.message, 3);
        goto out;
    }

    if (nthreads > 0) {
        workers = calloc((size_t)nthreads, sizeof *workers);
        if (workers == NULL)
            goto out;
        for (i = 0; i < nthreads; i++) {
            workers[i].model = model;
            workers[i].req = req;
            workers[i].reference = &out;
            if (pthread_create(&workers[i].thread, NULL, work, &workers[i]) != 0)
                break;
            started++;
        }
        for (i = 0; i < started; i++)
            pthread_join(workers[i].thread, NULL);
        for (i = 0; i < started; i++) {
            if (workers[i].failures || workers[i].mismatches) {
                char msg[2300];
                snprintf(msg, sizeof msg, "thread %d: %d failures, %d mismatches; %s", i,
                         workers[i].failures, workers[i].mismatches, workers[i].message);
                exit_code = report("concurrent", SELDON_EINTERNAL, msg, 4);
                goto out;
            }
        }
        if (started < nthreads) {
            fprintf(stderr, "cannot start threads\n");
            goto out;
        }
    }
    fwrite(out.data, 1, out.len, stdout);
    putchar('\n');
    exit_code = 0;
out:
    free(workers);
    seldon_msg_free(req);
    seldon_model_release(model);
    seldon_repo_free(repo);
    seldon_buf_free(&body);
    seldon_buf_free(&out);
    pthread_cond_destroy(&d.cond);
    pthread_mutex_destroy(&d.lock);
    return exit_code;
}
