/*
 * Inferences: the objects a runtime completes, request checks, and the
 * response finishing that every server needs (requested outputs, the
 * binary extension, names and id).
 */
#include <stdio.h>
#include <string.h>

#include "repo.h"

int seldon_infer_new(seldon_infer **out, const seldon_msg *request, seldon_msg *response,
                     seldon_infer_done_fn done, void *user_data)
{
    seldon_infer *inf;
    if (out == NULL || request == NULL || response == NULL || done == NULL)
        return sdn_error(SELDON_EINVAL, "infer_new: NULL argument");
    *out = NULL;
    if (request->kind != SELDON_MSG_REQUEST)
        return sdn_error(SELDON_EINVAL, "infer_new: the request is a response message");
    inf = sdn_calloc(1, sizeof(*inf));
    if (inf == NULL)
        return sdn_error(SELDON_ENOMEM, "infer_new: out of memory");
    seldon_msg_reset(response, SELDON_MSG_RESPONSE);
    inf->request = request;
    inf->response = response;
    inf->done = done;
    inf->user_data = user_data;
    atomic_init(&inf->completed, 0);
    *out = inf;
    return 0;
}

void seldon_infer_free(seldon_infer *infer)
{
    if (infer == NULL)
        return;
    sdn_free(infer->parts);
    seldon_msg_free(infer->own_request);
    seldon_msg_free(infer->own_response);
    sdn_free(infer);
}

const seldon_msg *seldon_infer_request(const seldon_infer *infer)
{
    return infer ? infer->request : NULL;
}

seldon_msg *seldon_infer_response(seldon_infer *infer)
{
    return infer ? infer->response : NULL;
}

static const sdn_output *requested(const seldon_msg *req, const char *name, size_t len)
{
    uint32_t i;
    for (i = 0; i < req->noutputs; i++)
        if (req->outputs[i].name.len == len && memcmp(req->outputs[i].name.p, name, len) == 0)
            return &req->outputs[i];
    return NULL;
}

int32_t seldon_infer_wants_output(const seldon_infer *infer, const char *name, size_t len)
{
    if (infer == NULL || name == NULL)
        return 0;
    return infer->request->noutputs == 0 || requested(infer->request, name, len) != NULL;
}

static int param_true(const sdn_params *ps, const char *name, int *value)
{
    const sdn_param *p = sdn_params_find(ps, name, strlen(name));
    if (p == NULL)
        return 0;
    *value = p->type == SELDON_PARAM_BOOL ? p->b : p->type == SELDON_PARAM_INT64 ? p->i != 0 : 0;
    return 1;
}

static int declared_output(const seldon_model *m, const sdn_str *name)
{
    uint32_t i;
    for (i = 0; m != NULL && i < m->settings.outputs.n; i++)
        if (m->settings.outputs.items[i].name.len == name->len &&
            memcmp(m->settings.outputs.items[i].name.p, name->p, name->len) == 0)
            return 1;
    return 0;
}

static int produced(const seldon_msg *resp, const sdn_str *name)
{
    uint32_t i;
    for (i = 0; i < resp->ntensors; i++)
        if (resp->tensors[i].name.len == name->len &&
            memcmp(resp->tensors[i].name.p, name->p, name->len) == 0)
            return 1;
    return 0;
}

/*
 * Keeps the outputs the request named (all when it named none), in the
 * order the runtime produced them, marks the binary ones, and stamps the
 * model and the request id.
 *
 * A requested output that the model did not produce is a bad request that
 * names the output, as Triton answers ("outputs[1].name: model m has no
 * output 'x'"), unless the model declares it (model-settings.json "outputs"
 * or the runtime's metadata): a conditional model declares both branches and
 * produces one, and a caller asking for both gets the one that fired.
 */
static int finish_response(seldon_infer *inf)
{
    const seldon_msg *req = inf->request;
    seldon_msg *resp = inf->response;
    int all_binary = 0, b;
    uint32_t i, k = 0;
    int rc;

    for (i = 0; i < req->noutputs; i++) {
        const sdn_str *name = &req->outputs[i].name;
        if (!produced(resp, name) && !declared_output(inf->model, name))
            return sdn_error(SELDON_EINVAL, "outputs[%u].name: model %s has no output '%.*s'", i,
                             inf->model ? inf->model->settings.name : "",
                             (int)(name->len > 128 ? 128 : name->len), name->p);
    }

    param_true(&req->params, "binary_data_output", &all_binary);
    for (i = 0; i < resp->ntensors; i++) {
        sdn_tensor *t = &resp->tensors[i];
        const sdn_output *o = NULL;
        if (req->noutputs && (o = requested(req, t->name.p, t->name.len)) == NULL)
            continue;
        if (all_binary)
            t->flags |= SDN_TENSOR_BINARY;
        if (o != NULL && param_true(&o->params, "binary_data", &b))
            t->flags = b ? (t->flags | SDN_TENSOR_BINARY) : (t->flags & ~SDN_TENSOR_BINARY);
        if (k != i)
            resp->tensors[k] = *t;
        k++;
    }
    resp->ntensors = k;
    if (inf->model != NULL && resp->model_name.len == 0) {
        rc = seldon_msg_set_model(resp, inf->model->settings.name,
                                  strlen(inf->model->settings.name), inf->model->settings.version,
                                  strlen(inf->model->settings.version));
        if (rc < 0)
            return rc;
    }
    return seldon_msg_set_id(resp, req->id.p, req->id.len);
}

void seldon_infer_complete(seldon_infer *infer, int32_t status, const char *message)
{
    int rc = status;
    if (infer == NULL)
        return;
    if (atomic_exchange(&infer->completed, 1) != 0) {
        sdn_log(SELDON_LOG_ERROR, "an inference was completed twice; the second is ignored");
        return;
    }
    if (rc == 0 && infer->parts == NULL) {
        rc = finish_response(infer);
        if (rc < 0)
            message = seldon_last_error();
    } else if (rc > 0) {
        rc = SELDON_EINTERNAL;
    }
    if (rc < 0 && message == NULL)
        message = seldon_strerror(rc);
    infer->done(infer->user_data, infer, rc, rc == 0 ? NULL : message);
}

/* Completes inferences that never reached a runtime. */
static void fail_all(seldon_infer *const *infers, size_t count, int rc, const char *message)
{
    size_t i;
    for (i = 0; i < count; i++)
        seldon_infer_complete(infers[i], rc, message);
}

void seldon_model_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    int serial, rc;
    size_t i;
    if (count == 0 || infers == NULL)
        return;
    if (model == NULL) {
        fail_all(infers, count, SELDON_EINVAL, "execute: no model");
        return;
    }
    for (i = 0; i < count; i++)
        infers[i]->model = model;
    serial = (model->runtime->flags & SELDON_RUNTIME_CONCURRENT) == 0;
    if (serial)
        pthread_mutex_lock(&model->exec_lock);
    rc = model->runtime->execute(model, infers, count);
    if (serial)
        pthread_mutex_unlock(&model->exec_lock);
    if (rc < 0) {
        char why[256];
        snprintf(why, sizeof(why), "model %s: %s", model->settings.name,
                 seldon_last_error()[0] ? seldon_last_error() : seldon_strerror(rc));
        fail_all(infers, count, rc, why);
    }
}

static int dims_match(const sdn_tmeta *m, const sdn_tensor *t)
{
    uint32_t i;
    if (m->ndim != t->ndim)
        return 0;
    for (i = 0; i < m->ndim; i++)
        if (m->shape[i] != -1 && m->shape[i] != t->shape[i])
            return 0;
    return 1;
}

static void shape_str(char *buf, size_t size, const int64_t *shape, uint32_t ndim)
{
    size_t off = 0;
    uint32_t i;
    off += (size_t)snprintf(buf + off, size - off, "[");
    for (i = 0; i < ndim && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (off < size)
        snprintf(buf + off, size - off, "]");
}

int seldon_model_check_request(const seldon_model *model, const seldon_msg *request)
{
    const sdn_tmetas *ins;
    uint32_t i, j;
    if (model == NULL || request == NULL)
        return sdn_error(SELDON_EINVAL, "check_request: NULL argument");
    ins = &model->settings.inputs;
    if (ins->n == 0)
        return 0;
    for (i = 0; i < request->ntensors; i++) {
        const sdn_tensor *t = &request->tensors[i];
        const sdn_tmeta *m = NULL;
        for (j = 0; j < ins->n; j++)
            if (ins->items[j].name.len == t->name.len &&
                memcmp(ins->items[j].name.p, t->name.p, t->name.len) == 0)
                m = &ins->items[j];
        if (m == NULL)
            return sdn_error(SELDON_EINVAL, "inputs[%u].name: model %s has no input '%.128s'",
                             i, model->settings.name, t->name.p);
        if (m->datatype != t->datatype)
            return sdn_error(SELDON_EDATATYPE, "inputs[%u].datatype: model %s expects %s for %s, got %s",
                             i, model->settings.name, seldon_datatype_name(m->datatype), m->name.p,
                             seldon_datatype_name(t->datatype));
        if (!dims_match(m, t)) {
            char want[128], got[128];
            shape_str(want, sizeof(want), m->shape, m->ndim);
            shape_str(got, sizeof(got), t->shape, t->ndim);
            return sdn_error(SELDON_ESHAPE, "inputs[%u].shape: model %s expects %s for %s, got %s",
                             i, model->settings.name, want, m->name.p, got);
        }
    }
    return 0;
}
