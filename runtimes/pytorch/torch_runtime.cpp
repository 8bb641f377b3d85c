/*
 * The TorchScript runtime: models traced or scripted with PyTorch, served
 * by Debian's libtorch on the CPU, as Triton's pytorch_libtorch backend does.
 *
 * implementation "pytorch" (or "pytorch_libtorch"). The model file is
 * parameters.uri, or model.pt in the model's folder, or <N>/model.pt in the
 * highest numbered subfolder (Triton's layout: config.pbtxt beside 1/model.pt).
 *
 * Tensor names: TorchScript's forward() takes positional arguments and
 * returns a tensor or a tuple of them. As in Triton, a name's "__<N>" suffix
 * is its position (x__0, x__1 in; y__0, y__1 out) unless model-settings.json
 * declares "inputs" / "outputs", whose order then gives the positions. A
 * model with one input accepts any name for it. Outputs that nothing names
 * are called y__<N>.
 *
 * Datatypes: BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, FP32, FP64.
 *
 * Threads: libtorch's own intra-op pool would run on top of the server's
 * inference workers, which already run models in parallel; it gets one
 * thread unless parameters.extra.nthread says otherwise (the first model
 * loaded sets it, for the process). execute is serialized per model.
 *
 * C++ stays inside this file: the server sees the C runtime table, and every
 * C++ exception is caught before it reaches the server.
 */
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <jansson.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "seldon/runtime.h"

#define TORCHRT_VISIBLE __attribute__((visibility("default")))

/*
 * LeakSanitizer, when the process has it (sanitizer builds): libtorch keeps
 * process-wide caches (kernels, graph executors, thread pools) that it never
 * frees. What libtorch allocates while it loads or runs a model is left out
 * of the leak check; this file's own allocations are still checked.
 */
extern "C" void __lsan_disable(void) __attribute__((weak));
extern "C" void __lsan_enable(void) __attribute__((weak));

namespace
{

struct LsanOff {
    LsanOff()
    {
        if (__lsan_disable)
            __lsan_disable();
    }
    ~LsanOff()
    {
        if (__lsan_enable)
            __lsan_enable();
    }
    LsanOff(const LsanOff &) = delete;
    LsanOff &operator=(const LsanOff &) = delete;
};

struct TorchModel {
    torch::jit::script::Module module;
    std::vector<std::string> inputs;  /* declared input names, by position */
    std::vector<std::string> outputs; /* declared output names, by position */
};

std::once_flag threads_once;

bool is_file(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/* The first line of an exception's message (libtorch appends stack traces). */
std::string first_line(const std::exception &e)
{
    const c10::Error *ce = dynamic_cast<const c10::Error *>(&e);
    std::string s = ce ? ce->what_without_backtrace() : e.what();
    size_t nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
}

std::string find_model_file(const std::string &uri)
{
    if (is_file(uri))
        return uri;
    if (!is_dir(uri))
        return "";
    if (is_file(uri + "/model.pt"))
        return uri + "/model.pt";
    /* Triton's layout: the highest numbered version folder. */
    for (int v = 1000; v >= 1; v--) {
        std::string p = uri + "/" + std::to_string(v) + "/model.pt";
        if (is_file(p))
            return p;
    }
    return "";
}

/* The names of settings[key][*].name, in order; false with why set on a malformed file. */
bool declared_names(std::vector<std::string> &out, json_t *settings, const char *key,
                    std::string &why)
{
    json_t *arr = json_object_get(settings, key);
    size_t i;
    json_t *item;
    if (arr == NULL)
        return true;
    if (!json_is_array(arr)) {
        why = std::string("model-settings.json: ") + key + ": expected an array";
        return false;
    }
    json_array_foreach(arr, i, item)
    {
        json_t *name = json_object_get(item, "name");
        if (!json_is_string(name)) {
            why = std::string("model-settings.json: ") + key + "[" + std::to_string(i) +
                  "].name: expected a string";
            return false;
        }
        out.emplace_back(json_string_value(name));
    }
    return true;
}

bool read_settings(TorchModel &m, const char *dir, std::string &why)
{
    std::string path = std::string(dir) + "/model-settings.json";
    json_error_t err;
    json_t *root = json_load_file(path.c_str(), 0, &err);
    bool ok;
    if (root == NULL) {
        if (!is_file(path))
            return true;
        why = "model-settings.json: " + std::string(err.text);
        return false;
    }
    ok = declared_names(m.inputs, root, "inputs", why) &&
         declared_names(m.outputs, root, "outputs", why);
    json_decref(root);
    return ok;
}

/* The N of a name ending in "__N", or -1. */
long suffix_index(const char *name)
{
    const char *p = strstr(name, "__");
    const char *last = NULL;
    char *end;
    long v;
    for (; p != NULL; p = strstr(p + 1, "__"))
        last = p;
    if (last == NULL || last[2] == '\0')
        return -1;
    v = strtol(last + 2, &end, 10);
    return *end == '\0' && v >= 0 && v < 4096 ? v : -1;
}

bool to_torch(int32_t dt, c10::ScalarType &out)
{
    switch (dt) {
    case SELDON_DT_BOOL:
        out = torch::kBool;
        return true;
    case SELDON_DT_UINT8:
        out = torch::kUInt8;
        return true;
    case SELDON_DT_INT8:
        out = torch::kInt8;
        return true;
    case SELDON_DT_INT16:
        out = torch::kInt16;
        return true;
    case SELDON_DT_INT32:
        out = torch::kInt32;
        return true;
    case SELDON_DT_INT64:
        out = torch::kInt64;
        return true;
    case SELDON_DT_FP16:
        out = torch::kFloat16;
        return true;
    case SELDON_DT_FP32:
        out = torch::kFloat32;
        return true;
    case SELDON_DT_FP64:
        out = torch::kFloat64;
        return true;
    default:
        return false;
    }
}

int32_t from_torch(c10::ScalarType t)
{
    switch (t) {
    case torch::kBool:
        return SELDON_DT_BOOL;
    case torch::kUInt8:
        return SELDON_DT_UINT8;
    case torch::kInt8:
        return SELDON_DT_INT8;
    case torch::kInt16:
        return SELDON_DT_INT16;
    case torch::kInt32:
        return SELDON_DT_INT32;
    case torch::kInt64:
        return SELDON_DT_INT64;
    case torch::kFloat16:
        return SELDON_DT_FP16;
    case torch::kFloat32:
        return SELDON_DT_FP32;
    case torch::kFloat64:
        return SELDON_DT_FP64;
    default:
        return SELDON_DT_INVALID;
    }
}

int torch_load(seldon_model *model)
{
    TorchModel *m = nullptr;
    std::string why;
    try {
        seldon_param p;
        int64_t nthread = 1;
        int rc = seldon_model_extra(&p, model, "nthread");
        if (rc == 0 && p.type == SELDON_PARAM_INT64 && p.int64_value >= 0 && p.int64_value <= 4096)
            nthread = p.int64_value;
        else if (rc != SELDON_ENOTFOUND)
            return seldon_model_set_error(
                model, "pytorch: parameters.extra.nthread must be an integer from 0 to 4096");
        std::call_once(threads_once, [nthread] {
            if (nthread > 0)
                at::set_num_threads((int)nthread);
        });
        std::string file = find_model_file(seldon_model_uri(model));
        if (file.empty())
            return seldon_model_set_error(model, ("pytorch: no model.pt at " +
                                                  std::string(seldon_model_uri(model)) +
                                                  " (nor in a version folder such as 1/model.pt)")
                                                     .c_str());
        m = new TorchModel();
        if (!read_settings(*m, seldon_model_dir(model), why)) {
            delete m;
            return seldon_model_set_error(model, ("pytorch: " + why).c_str());
        }
        LsanOff lsan;
        m->module = torch::jit::load(file, torch::kCPU);
        m->module.eval();
    } catch (const std::exception &e) {
        delete m;
        return seldon_model_set_error(
            model, ("pytorch: cannot load the TorchScript model: " + first_line(e)).c_str());
    }
    seldon_model_set_state(model, m);
    return 0;
}

/* One inference; 0, or a negative code with why set. */
int run_one(TorchModel &m, seldon_infer *infer, const char *model_name, std::string &why)
{
    const seldon_msg *req = seldon_infer_request(infer);
    seldon_msg *resp = seldon_infer_response(infer);
    size_t i, n = seldon_msg_tensor_count(req);
    std::vector<c10::IValue> args(n);
    std::vector<bool> filled(n, false);

    for (i = 0; i < n; i++) {
        seldon_tensor t;
        c10::ScalarType st;
        long pos = -1;
        seldon_msg_tensor(&t, req, i);
        if (!m.inputs.empty()) {
            for (size_t j = 0; j < m.inputs.size(); j++)
                if (m.inputs[j] == t.name)
                    pos = (long)j;
        } else {
            pos = suffix_index(t.name);
            if (pos < 0 && n == 1)
                pos = 0;
        }
        if (pos < 0 || (size_t)pos >= n || filled[(size_t)pos]) {
            why = "model " + std::string(model_name) + ": input " + t.name +
                  ": not a position of forward() (name inputs x__0, x__1... or declare them in "
                  "model-settings.json)";
            return SELDON_EINVAL;
        }
        if (!to_torch(t.datatype, st)) {
            why = "model " + std::string(model_name) + ": input " + t.name + ": datatype " +
                  seldon_datatype_name(t.datatype) + " has no TorchScript tensor type";
            return SELDON_EDATATYPE;
        }
        std::vector<int64_t> sizes(t.shape, t.shape + t.ndim);
        /* A copy: forward() may write to its arguments, and the request's bytes may be borrowed. */
        torch::Tensor x = torch::empty(sizes, torch::TensorOptions().dtype(st));
        if (t.nbytes > 0)
            memcpy(x.data_ptr(), t.data, t.nbytes);
        args[(size_t)pos] = std::move(x);
        filled[(size_t)pos] = true;
    }

    c10::IValue result;
    {
        LsanOff lsan;
        c10::InferenceMode guard;
        result = m.module.forward(args);
    }
    std::vector<torch::Tensor> outs;
    if (result.isTensor()) {
        outs.push_back(result.toTensor());
    } else if (result.isTuple()) {
        for (const auto &v : result.toTupleRef().elements()) {
            if (!v.isTensor()) {
                why = "model " + std::string(model_name) +
                      ": forward() returned a tuple holding "
                      "something other than tensors";
                return SELDON_EINTERNAL;
            }
            outs.push_back(v.toTensor());
        }
    } else if (result.isTensorList()) {
        for (const auto &t : result.toTensorVector())
            outs.push_back(t);
    } else {
        why = "model " + std::string(model_name) +
              ": forward() must return a tensor or a tuple of tensors";
        return SELDON_EINTERNAL;
    }
    for (i = 0; i < outs.size(); i++) {
        std::string name = i < m.outputs.size() ? m.outputs[i] : "y__" + std::to_string(i);
        if (!seldon_infer_wants_output(infer, name.data(), name.size()))
            continue;
        torch::Tensor y = outs[i].contiguous();
        int32_t dt = from_torch(y.scalar_type());
        if (dt == SELDON_DT_INVALID) {
            why = "model " + std::string(model_name) + ": output " + name + ": tensor type " +
                  std::string(c10::toString(y.scalar_type())) + " has no protocol datatype";
            return SELDON_EINTERNAL;
        }
        std::vector<int64_t> shape(y.sizes().begin(), y.sizes().end());
        size_t nbytes = (size_t)y.numel() * seldon_datatype_size(dt), k;
        seldon_tensor out;
        int rc = seldon_msg_add_tensor(&k, resp, name.data(), name.size(), dt, shape.data(),
                                       (uint32_t)shape.size(), NULL, nbytes, SELDON_TENSOR_ALLOC);
        if (rc < 0) {
            why = "model " + std::string(model_name) + ": output " + name + ": " +
                  seldon_last_error();
            return rc;
        }
        seldon_msg_tensor(&out, resp, k);
        if (nbytes > 0)
            memcpy(out.data, y.data_ptr(), nbytes);
    }
    return 0;
}

int torch_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    TorchModel *m = static_cast<TorchModel *>(seldon_model_state(model));
    for (size_t i = 0; i < count; i++) {
        std::string why;
        int rc;
        try {
            rc = run_one(*m, infers[i], seldon_model_name(model), why);
        } catch (const std::exception &e) {
            /* Mostly arguments forward() does not take: a shape or a type of the request. */
            why = "model " + std::string(seldon_model_name(model)) +
                  ": forward() failed: " + first_line(e);
            rc = SELDON_EINVAL;
        }
        seldon_infer_complete(infers[i], rc, rc == 0 ? NULL : why.c_str());
    }
    return 0;
}

void torch_unload(seldon_model *model)
{
    delete static_cast<TorchModel *>(seldon_model_state(model));
    seldon_model_set_state(model, NULL);
}

const seldon_runtime torch_runtime = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "pytorch",
    0,
    torch_load,
    NULL,
    torch_execute,
    torch_unload,
};

} // namespace

extern "C" TORCHRT_VISIBLE const seldon_runtime *seldon_runtime_entry(void)
{
    return &torch_runtime;
}
