/*
 * The Python runtime: Python models inside the server, on Debian's libpython3.
 *
 * One interpreter per process, started by the first model that loads and
 * never finalized (extension modules such as numpy do not survive a restart
 * of the interpreter). Everything model-specific lives in Python, in
 * seldon_python_host.py beside this plugin (folder python/): scikit-learn
 * (implementation "sklearn" or "mlserver_sklearn.SKLearnModel"), MLServer
 * custom models ("module.ClassName" naming an MLModel subclass) and the
 * plain contract (a class with load() and predict(dict) -> dict). This file
 * starts the interpreter, takes and gives the GIL, and turns requests into
 * Python objects and Python's answers into response tensors.
 *
 * Threads: load, execute and unload run on the server's threads (the load
 * executor and the inference workers), never on an I/O loop. Each thread that
 * runs Python keeps one Python thread state for its lifetime, so a request
 * costs a GIL acquisition, not a thread state. execute is serialized per
 * model (no SELDON_RUNTIME_CONCURRENT), as MLServer runs one predict at a
 * time per model; the GIL is released while a worker waits for it, and
 * Python itself releases it in sleeps, I/O and numpy, so other models keep
 * running. Responses are completed after the GIL is given back.
 *
 * Python's view of a request, built here, and of a result, read here:
 *
 *   request: (id, parameters, inputs, wanted outputs or None)
 *            input = (name, datatype, shape, data, parameters)
 *            data = bytearray (fixed-size types, a copy) or list of bytes (BYTES)
 *   result:  (0, outputs) or (code, message), code a negative SELDON_E*
 *            output = (name, datatype, shape, data, content_type or None)
 *            data = a C-contiguous buffer (numpy array) or list of bytes (BYTES)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/runtime.h"

#define PYRT_VISIBLE __attribute__((visibility("default")))

typedef struct py_model {
    PyObject *handle; /* the host's model object */
} py_model;

/* Set once by py_start(), read-only afterwards. */
static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static int start_rc;
static char start_error[1024];
static PyObject *host_load, *host_execute, *host_unload;
static PyObject *dt_names[SELDON_DT_BYTES + 1]; /* interned "FP32"... */

/* Whether this thread holds a Python thread state of its own (see gil_take). */
static _Thread_local int thread_ready;

/*
 * LeakSanitizer, when the process has it (sanitizer builds): the interpreter
 * is never finalized, by design, so what Python allocates stays allocated at
 * exit, much of it referenced only from pymalloc's arenas, which the leak
 * checker does not scan. Allocations made while Python runs are not ours to
 * check: they are left out, the plugin's own are still checked.
 */
extern void __lsan_disable(void) __attribute__((weak));
extern void __lsan_enable(void) __attribute__((weak));

static void lsan_off(void)
{
    if (__lsan_disable)
        __lsan_disable();
}

static void lsan_on(void)
{
    if (__lsan_enable)
        __lsan_enable();
}

static PyGILState_STATE gil_take(void)
{
    lsan_off();
    if (!thread_ready) {
        /* A thread state that lives as long as the thread: created here, GIL dropped at once. */
        (void)PyGILState_Ensure();
        (void)PyEval_SaveThread();
        thread_ready = 1;
    }
    return PyGILState_Ensure();
}

static void gil_give(PyGILState_STATE s)
{
    PyGILState_Release(s);
    lsan_on();
}

/* --- The _seldon module: what Python code calls back ---------------------- */

static PyObject *mod_log(PyObject *self, PyObject *args)
{
    int level;
    const char *message;
    (void)self;
    if (!PyArg_ParseTuple(args, "is", &level, &message))
        return NULL;
    {
        /* The log callback may block on stderr: not with the GIL held. */
        PyThreadState *ts = PyEval_SaveThread();
        seldon_log(level, message);
        PyEval_RestoreThread(ts);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_log_enabled(PyObject *self, PyObject *args)
{
    int level;
    (void)self;
    if (!PyArg_ParseTuple(args, "i", &level))
        return NULL;
    return PyBool_FromLong(seldon_log_enabled(level));
}

static PyMethodDef mod_methods[] = {
    {"log", mod_log, METH_VARARGS, "log(level, message): one line in the server's log"},
    {"log_enabled", mod_log_enabled, METH_VARARGS, "log_enabled(level) -> bool"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef mod_def = {
    PyModuleDef_HEAD_INIT,
    "_seldon",
    "The server, as seen from Python models.",
    -1,
    mod_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

/* --- Starting the interpreter -------------------------------------------- */

/* The current Python exception as "Type: message" in buf; clears it. */
static void take_exception(char *buf, size_t size)
{
    PyObject *type, *value, *tb, *s = NULL;
    const char *text = NULL;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL)
        s = PyObject_Str(value);
    if (s != NULL)
        text = PyUnicode_AsUTF8(s);
    if (text == NULL)
        PyErr_Clear();
    snprintf(buf, size, "%s: %s", type ? ((PyTypeObject *)type)->tp_name : "error",
             text ? text : "(no message)");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* This plugin's folder: python/ beside it holds the host module and the mlserver package. */
static int plugin_dir(char *out, size_t size)
{
    Dl_info info;
    const char *slash;
    if (dladdr((void *)&plugin_dir, &info) == 0 || info.dli_fname == NULL)
        return -1;
    slash = strrchr(info.dli_fname, '/');
    if (slash == NULL)
        return snprintf(out, size, ".") < (int)size ? 0 : -1;
    return (size_t)(slash - info.dli_fname) < size
               ? (snprintf(out, size, "%.*s", (int)(slash - info.dli_fname), info.dli_fname), 0)
               : -1;
}

static int start_interpreter(void)
{
    PyConfig config;
    PyStatus status;

    PyConfig_InitPythonConfig(&config);
    /* The server owns SIGINT and SIGTERM. */
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    /*
     * Paths are computed from the program name: Debian's interpreter, whose
     * packages (numpy, sklearn, pandas) match the libpython linked here,
     * whatever python3 comes first on PATH.
     */
    status = PyConfig_SetBytesString(&config, &config.program_name, "/usr/bin/python3");
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        snprintf(start_error, sizeof(start_error), "python: cannot start the interpreter: %s",
                 status.err_msg ? status.err_msg : "unknown error");
        return SELDON_EINTERNAL;
    }
    /* Give the GIL back; this thread keeps its thread state (see gil_take). */
    (void)PyEval_SaveThread();
    thread_ready = 1;
    return 0;
}

static void py_start(void)
{
    Dl_info info;
    char dir[PATH_MAX], why[768];
    PyGILState_STATE g;
    PyObject *sys_path = NULL, *p = NULL, *host = NULL, *mod = NULL, *modules;
    int i;

    /*
     * numpy's and the other extension modules are not linked against
     * libpython: they find its symbols in the global scope. The server
     * opened this plugin with RTLD_LOCAL, so promote libpython to global,
     * and keep it (and this plugin) loaded for the life of the process.
     */
    if (dladdr((void *)&Py_IsInitialized, &info) == 0 || info.dli_fname == NULL ||
        dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD | RTLD_NODELETE) == NULL) {
        snprintf(start_error, sizeof(start_error), "python: cannot make libpython global: %s",
                 dlerror());
        start_rc = SELDON_EINTERNAL;
        return;
    }
    if (dladdr((void *)&py_start, &info) != 0 && info.dli_fname != NULL)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (plugin_dir(dir, sizeof(dir) - 8) < 0) {
        snprintf(start_error, sizeof(start_error), "python: cannot find the plugin's folder");
        start_rc = SELDON_EINTERNAL;
        return;
    }
    strcat(dir, "/python");

    /* A host that already runs Python (an application embedding libseldon) keeps its own. */
    lsan_off();
    if (!Py_IsInitialized())
        start_rc = start_interpreter();
    lsan_on();
    if (start_rc < 0)
        return;

    g = gil_take();
    mod = PyModule_Create(&mod_def);
    modules = PyImport_GetModuleDict();
    if (mod == NULL || PyDict_SetItemString(modules, "_seldon", mod) < 0)
        goto fail;
    sys_path = PySys_GetObject("path"); /* borrowed */
    p = PyUnicode_DecodeFSDefault(dir);
    if (sys_path == NULL || p == NULL || PyList_Insert(sys_path, 0, p) < 0)
        goto fail;
    host = PyImport_ImportModule("seldon_python_host");
    if (host == NULL)
        goto fail;
    host_load = PyObject_GetAttrString(host, "load");
    host_execute = PyObject_GetAttrString(host, "execute");
    host_unload = PyObject_GetAttrString(host, "unload");
    if (host_load == NULL || host_execute == NULL || host_unload == NULL)
        goto fail;
    for (i = 1; i <= SELDON_DT_BYTES; i++)
        if ((dt_names[i] = PyUnicode_InternFromString(seldon_datatype_name(i))) == NULL)
            goto fail;
    Py_DECREF(p);
    Py_DECREF(host);
    Py_DECREF(mod);
    gil_give(g);
    return;
fail:
    take_exception(why, sizeof(why));
    snprintf(start_error, sizeof(start_error),
             "python: cannot start the host module from %.300s: %.600s", dir, why);
    start_rc = SELDON_EINTERNAL;
    Py_XDECREF(p);
    Py_XDECREF(host);
    Py_XDECREF(mod);
    gil_give(g);
}

/* --- Load and unload ------------------------------------------------------ */

static int py_load(seldon_model *model)
{
    PyGILState_STATE g;
    PyObject *res = NULL;
    py_model *st = NULL;
    int rc = 0;
    char why[2048];

    pthread_once(&start_once, py_start);
    if (start_rc < 0) {
        seldon_model_set_error(model, start_error);
        return start_rc;
    }
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
        seldon_model_set_error(model, "python: out of memory");
        return SELDON_ENOMEM;
    }
    g = gil_take();
    /* host.load(name, version, folder, uri) -> (0, model) or (code, message); never raises. */
    res = PyObject_CallFunction(host_load, "ssss", seldon_model_name(model),
                                seldon_model_version(model), seldon_model_dir(model),
                                seldon_model_uri(model));
    if (res == NULL) {
        take_exception(why, sizeof(why));
        rc = SELDON_EINTERNAL;
    } else if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
        snprintf(why, sizeof(why), "python: the host's load returned something else");
        rc = SELDON_EINTERNAL;
    } else if (PyLong_AsLong(PyTuple_GET_ITEM(res, 0)) != 0) {
        const char *m = PyUnicode_AsUTF8(PyTuple_GET_ITEM(res, 1));
        rc = (int)PyLong_AsLong(PyTuple_GET_ITEM(res, 0));
        snprintf(why, sizeof(why), "%.2000s", m ? m : "load failed");
        PyErr_Clear();
    } else {
        st->handle = PyTuple_GET_ITEM(res, 1);
        Py_INCREF(st->handle);
    }
    Py_XDECREF(res);
    gil_give(g);
    if (rc < 0) {
        free(st);
        seldon_model_set_error(model, why);
        return rc;
    }
    seldon_model_set_state(model, st);
    return 0;
}

static void py_unload(seldon_model *model)
{
    py_model *st = seldon_model_state(model);
    PyGILState_STATE g;
    PyObject *res;
    if (st == NULL)
        return;
    g = gil_take();
    res = PyObject_CallFunctionObjArgs(host_unload, st->handle, NULL);
    if (res == NULL)
        PyErr_Clear();
    Py_XDECREF(res);
    Py_DECREF(st->handle);
    gil_give(g);
    free(st);
    seldon_model_set_state(model, NULL);
}

/* --- Requests into Python ------------------------------------------------- */

static PyObject *params_dict(const seldon_msg *msg, int32_t scope, size_t index)
{
    size_t i, n = seldon_msg_param_count(msg, scope, index);
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        seldon_param p;
        PyObject *v = NULL;
        if (seldon_msg_param(&p, msg, scope, index, i) < 0)
            continue;
        switch (p.type) {
        case SELDON_PARAM_BOOL:
            v = PyBool_FromLong(p.bool_value);
            break;
        case SELDON_PARAM_INT64:
            v = PyLong_FromLongLong(p.int64_value);
            break;
        case SELDON_PARAM_DOUBLE:
            v = PyFloat_FromDouble(p.double_value);
            break;
        default:
            v = PyUnicode_DecodeUTF8(p.string_value, (Py_ssize_t)p.string_len, "replace");
            break;
        }
        if (v == NULL || PyDict_SetItemString(d, p.name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *shape_tuple(const int64_t *shape, uint32_t ndim)
{
    PyObject *t = PyTuple_New(ndim);
    uint32_t i;
    if (t == NULL)
        return NULL;
    for (i = 0; i < ndim; i++) {
        PyObject *v = PyLong_FromLongLong(shape[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *tensor_data(const seldon_tensor *t)
{
    PyObject *list;
    const uint8_t *elem;
    uint32_t len;
    size_t off = 0;
    int rc;
    if (t->datatype != SELDON_DT_BYTES)
        /* A copy the model may keep and write to: numpy arrays over it are writable. */
        return PyByteArray_FromStringAndSize(t->data, (Py_ssize_t)t->nbytes);
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    while ((rc = seldon_bytes_next(&elem, &len, t, &off)) == 1) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)elem, len);
        if (b == NULL || PyList_Append(list, b) < 0) {
            Py_XDECREF(b);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(b);
    }
    return list;
}

static PyObject *request_tuple(const seldon_msg *req)
{
    size_t i, n = seldon_msg_tensor_count(req), nout = seldon_msg_output_count(req), len;
    PyObject *inputs = NULL, *outputs = NULL, *params = NULL, *id = NULL, *res = NULL;
    const char *s;

    inputs = PyList_New((Py_ssize_t)n);
    if (inputs == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        seldon_tensor t;
        PyObject *item;
        if (seldon_msg_tensor(&t, req, i) < 0 || t.datatype < 1 || t.datatype > SELDON_DT_BYTES) {
            PyErr_Format(PyExc_ValueError, "inputs[%zu]: unreadable tensor", i);
            goto out;
        }
        item = Py_BuildValue("(s#ONNN)", t.name, (Py_ssize_t)t.name_len, dt_names[t.datatype],
                             shape_tuple(t.shape, t.ndim), tensor_data(&t),
                             params_dict(req, SELDON_SCOPE_TENSOR, i));
        if (item == NULL)
            goto out;
        PyList_SET_ITEM(inputs, (Py_ssize_t)i, item);
    }
    if (nout > 0) {
        outputs = PyList_New((Py_ssize_t)nout);
        if (outputs == NULL)
            goto out;
        for (i = 0; i < nout; i++) {
            PyObject *name;
            s = seldon_msg_output_name(req, i, &len);
            name = PyUnicode_DecodeUTF8(s ? s : "", s ? (Py_ssize_t)len : 0, "replace");
            if (name == NULL)
                goto out;
            PyList_SET_ITEM(outputs, (Py_ssize_t)i, name);
        }
    } else {
        outputs = Py_None;
        Py_INCREF(outputs);
    }
    params = params_dict(req, SELDON_SCOPE_MSG, 0);
    s = seldon_msg_id(req, &len);
    id = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace");
    if (params == NULL || id == NULL)
        goto out;
    res = PyTuple_Pack(4, id, params, inputs, outputs);
out:
    Py_XDECREF(inputs);
    Py_XDECREF(outputs);
    Py_XDECREF(params);
    Py_XDECREF(id);
    return res;
}

/* --- Python's answers into responses -------------------------------------- */

/* Copies one output into resp; on failure sets a Python exception. */
static int add_output(seldon_msg *resp, PyObject *o)
{
    const char *name, *dtname, *ctype = NULL;
    Py_ssize_t name_len, dtlen;
    PyObject *shape_obj, *data, *ct;
    int64_t shape[32];
    uint32_t ndim, i;
    int32_t dt;
    size_t k;
    int rc;

    if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "an output must be (name, datatype, shape, data, content_type)");
        return -1;
    }
    name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(o, 0), &name_len);
    dtname = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(o, 1), &dtlen);
    if (name == NULL || dtname == NULL)
        return -1;
    dt = seldon_datatype_from_name(dtname, (size_t)dtlen);
    if (dt == SELDON_DT_INVALID) {
        PyErr_Format(PyExc_TypeError, "output %s: unknown datatype %s", name, dtname);
        return -1;
    }
    shape_obj = PyTuple_GET_ITEM(o, 2);
    if (!PyTuple_Check(shape_obj) || PyTuple_GET_SIZE(shape_obj) > 32) {
        PyErr_Format(PyExc_TypeError, "output %s: shape must be a tuple of at most 32 sizes", name);
        return -1;
    }
    ndim = (uint32_t)PyTuple_GET_SIZE(shape_obj);
    for (i = 0; i < ndim; i++) {
        shape[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape_obj, i));
        if (shape[i] < 0) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "output %s: negative size in shape", name);
            return -1;
        }
    }
    data = PyTuple_GET_ITEM(o, 3);
    if (dt == SELDON_DT_BYTES) {
        Py_ssize_t n, j;
        size_t total = 0;
        uint8_t *buf, *w;
        if (!PyList_Check(data)) {
            PyErr_Format(PyExc_TypeError, "output %s: BYTES data must be a list of bytes", name);
            return -1;
        }
        n = PyList_GET_SIZE(data);
        for (j = 0; j < n; j++) {
            PyObject *b = PyList_GET_ITEM(data, j);
            if (!PyBytes_Check(b)) {
                PyErr_Format(PyExc_TypeError, "output %s: element %zd is not bytes", name, j);
                return -1;
            }
            total += 4 + (size_t)PyBytes_GET_SIZE(b);
        }
        buf = malloc(total ? total : 1);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (w = buf, j = 0; j < n; j++) {
            PyObject *b = PyList_GET_ITEM(data, j);
            uint32_t len = (uint32_t)PyBytes_GET_SIZE(b);
            w[0] = (uint8_t)len;
            w[1] = (uint8_t)(len >> 8);
            w[2] = (uint8_t)(len >> 16);
            w[3] = (uint8_t)(len >> 24);
            memcpy(w + 4, PyBytes_AS_STRING(b), len);
            w += 4 + len;
        }
        rc = seldon_msg_add_tensor(&k, resp, name, (size_t)name_len, dt, shape, ndim, buf, total,
                                   SELDON_TENSOR_COPY);
        free(buf);
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
            return -1;
        rc = seldon_msg_add_tensor(&k, resp, name, (size_t)name_len, dt, shape, ndim, view.buf,
                                   (size_t)view.len, SELDON_TENSOR_COPY);
        PyBuffer_Release(&view);
    }
    if (rc < 0) {
        PyErr_Format(PyExc_ValueError, "output %s: %s", name, seldon_last_error());
        return -1;
    }
    ct = PyTuple_GET_ITEM(o, 4);
    if (ct != Py_None && (ctype = PyUnicode_AsUTF8(ct)) != NULL) {
        seldon_param p;
        memset(&p, 0, sizeof(p));
        p.name = "content_type";
        p.name_len = 12;
        p.type = SELDON_PARAM_STRING;
        p.string_value = ctype;
        p.string_len = strlen(ctype);
        if (seldon_msg_add_param(resp, SELDON_SCOPE_TENSOR, k, &p) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* Reads one result into the inference's response; *msg is a malloc'd reason on failure. */
static int32_t take_result(seldon_infer *infer, PyObject *r, char **msg)
{
    long code;
    Py_ssize_t i;
    PyObject *outs;
    char why[2048];

    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
        *msg = strdup("python: the host returned a malformed result");
        return SELDON_EINTERNAL;
    }
    code = PyLong_AsLong(PyTuple_GET_ITEM(r, 0));
    if (code != 0) {
        const char *m = PyUnicode_AsUTF8(PyTuple_GET_ITEM(r, 1));
        PyErr_Clear();
        *msg = strdup(m ? m : "python: inference failed");
        return code < 0 && code >= SELDON_EINTERNAL ? (int32_t)code : SELDON_EINTERNAL;
    }
    outs = PyTuple_GET_ITEM(r, 1);
    if (!PyList_Check(outs)) {
        *msg = strdup("python: the host returned outputs that are not a list");
        return SELDON_EINTERNAL;
    }
    for (i = 0; i < PyList_GET_SIZE(outs); i++) {
        if (add_output(seldon_infer_response(infer), PyList_GET_ITEM(outs, i)) < 0) {
            take_exception(why, sizeof(why));
            *msg = strdup(why);
            return SELDON_EINTERNAL;
        }
    }
    return 0;
}

static int py_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    py_model *st = seldon_model_state(model);
    PyGILState_STATE g;
    PyObject *batch = NULL, *results = NULL;
    int32_t *codes = calloc(count, sizeof(*codes));
    char **msgs = calloc(count, sizeof(*msgs));
    char why[2048];
    size_t i;

    if (codes == NULL || msgs == NULL) {
        free(codes);
        free(msgs);
        return SELDON_ENOMEM;
    }
    g = gil_take();
    batch = PyList_New((Py_ssize_t)count);
    if (batch == NULL)
        goto fail_all;
    for (i = 0; i < count; i++) {
        PyObject *req = request_tuple(seldon_infer_request(infers[i]));
        if (req == NULL)
            goto fail_all;
        PyList_SET_ITEM(batch, (Py_ssize_t)i, req);
    }
    /* host.execute(model, requests) -> one result per request; never raises. */
    results = PyObject_CallFunctionObjArgs(host_execute, st->handle, batch, NULL);
    if (results == NULL || !PyList_Check(results) ||
        PyList_GET_SIZE(results) != (Py_ssize_t)count) {
        if (results != NULL)
            PyErr_SetString(PyExc_TypeError, "the host returned the wrong number of results");
        goto fail_all;
    }
    for (i = 0; i < count; i++)
        codes[i] = take_result(infers[i], PyList_GET_ITEM(results, (Py_ssize_t)i), &msgs[i]);
    goto done;
fail_all:
    take_exception(why, sizeof(why));
    for (i = 0; i < count; i++) {
        codes[i] = SELDON_EINTERNAL;
        msgs[i] = strdup(why);
    }
done:
    Py_XDECREF(batch);
    Py_XDECREF(results);
    gil_give(g);
    /* Completion encodes and sends: outside the GIL. */
    for (i = 0; i < count; i++) {
        seldon_infer_complete(infers[i], codes[i], codes[i] == 0 ? NULL : msgs[i]);
        free(msgs[i]);
    }
    free(codes);
    free(msgs);
    return 0;
}

static const seldon_runtime python_runtime = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "python",
    0,
    py_load,
    NULL,
    py_execute,
    py_unload,
};

PYRT_VISIBLE const seldon_runtime *seldon_runtime_entry(void);

PYRT_VISIBLE const seldon_runtime *seldon_runtime_entry(void)
{
    return &python_runtime;
}
