/*
 * Protobuf values of Seldon's Kafka topics as protobuf's JSON mapping, the way
 * upstream's CLI shows them (pbjson.h). Reads untrusted bytes: fuzzed by
 * tests/integration/inspect/fuzz_pbjson.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_predict_v2.pb-c.h"
#include "pbjson.h"
#include "sdd.h"

typedef Inference__ModelInferRequest Req;
typedef Inference__ModelInferResponse Resp;
typedef Inference__InferTensorContents Contents;
typedef Inference__InferParameter Param;
/* Every parameters map entry of grpc_predict_v2 has this layout (key, value). */
typedef Inference__ModelInferRequest__ParametersEntry ParamEntry;

/* ------------------------------------------------------------ JSON values */

void cli_json_bytes(FILE *f, const char *s, size_t n)
{
    size_t i;
    fputc('"', f);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch == '\r')
            fputs("\\r", f);
        else if (ch == '\t')
            fputs("\\t", f);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void put_cstr(FILE *f, const char *s)
{
    cli_json_bytes(f, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

static void put_b64(FILE *f, const uint8_t *p, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    fputc('"', f);
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        fputc(a[v >> 18], f);
        fputc(a[(v >> 12) & 63], f);
        fputc(a[(v >> 6) & 63], f);
        fputc(a[v & 63], f);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        fprintf(f, "%c%c==", a[v >> 18], a[(v >> 12) & 63]);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        fprintf(f, "%c%c%c=", a[v >> 18], a[(v >> 12) & 63], a[(v >> 6) & 63]);
    }
    fputc('"', f);
}

/*
 * A float as protobuf's JSON mapping writes it (Go's protojson): the shortest
 * digits that read back to the same value, fixed notation between 1e-6 and 1e21,
 * else exponent notation; NaN and infinities as strings.
 */
static void put_float(FILE *f, double v, int is32)
{
    char e[40], digits[24], out[400];
    int p, maxp = is32 ? 9 : 17, exp10, nd = 0, neg, i, o = 0;
    double a;
    const char *s;
    if (isnan(v)) {
        fputs("\"NaN\"", f);
        return;
    }
    if (isinf(v)) {
        fputs(v > 0 ? "\"Infinity\"" : "\"-Infinity\"", f);
        return;
    }
    if (v == 0) {
        fputs(signbit(v) ? "-0" : "0", f);
        return;
    }
    for (p = 1; p <= maxp; p++) {
        snprintf(e, sizeof(e), "%.*e", p - 1, v);
        if (is32 ? (float)strtod(e, NULL) == (float)v : strtod(e, NULL) == v)
            break;
    }
    if (p > maxp)
        snprintf(e, sizeof(e), "%.*e", maxp - 1, v);
    a = fabs(v);
    if (is32 ? ((float)a < 1e-6f || (float)a >= 1e21f) : (a < 1e-6 || a >= 1e21)) {
        char *x = strchr(e, 'e');
        size_t n;
        /* "e-07" -> "e-7", as Go trims a negative exponent's leading zero */
        if (x != NULL && x[1] == '-' && x[2] == '0' && x[3] != '\0' && x[4] == '\0') {
            x[2] = x[3];
            x[3] = '\0';
        }
        n = strlen(e);
        fwrite(e, 1, n, f);
        return;
    }
    /* e is "[-]d.ddde[+-]XX": the digits and the decimal exponent */
    s = e;
    neg = *s == '-';
    if (neg)
        s++;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && nd < (int)sizeof(digits) - 1)
            digits[nd++] = *s;
    digits[nd] = '\0';
    exp10 = *s == 'e' ? atoi(s + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = '\0';
    if (neg)
        out[o++] = '-';
    if (exp10 < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (i = 0; i < -exp10 - 1; i++)
            out[o++] = '0';
        for (i = 0; i < nd; i++)
            out[o++] = digits[i];
    } else {
        for (i = 0; i <= exp10; i++)
            out[o++] = i < nd ? digits[i] : '0';
        if (nd > exp10 + 1) {
            out[o++] = '.';
            for (i = exp10 + 1; i < nd; i++)
                out[o++] = digits[i];
        }
    }
    fwrite(out, 1, (size_t)o, f);
}

static int cmp_entry(const void *a, const void *b)
{
    const ParamEntry *x = *(ParamEntry *const *)a, *y = *(ParamEntry *const *)b;
    return strcmp(x->key ? x->key : "", y->key ? y->key : "");
}

/* A parameters map, keys sorted as protojson writes them; nothing when empty. */
static void put_params(FILE *f, const char *sep, size_t n, void *entries)
{
    ParamEntry **e = entries, **sorted;
    size_t i;
    if (n == 0)
        return;
    sorted = sdd_malloc(n * sizeof(*sorted));
    if (sorted == NULL)
        return;
    memcpy(sorted, e, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_entry);
    fprintf(f, "%s\"parameters\":{", sep);
    for (i = 0; i < n; i++) {
        const Param *p = sorted[i]->value;
        if (i)
            fputc(',', f);
        put_cstr(f, sorted[i]->key);
        fputs(":{", f);
        switch (p != NULL ? p->parameter_choice_case
                          : INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE__NOT_SET) {
        case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM:
            fprintf(f, "\"boolParam\":%s", p->bool_param ? "true" : "false");
            break;
        case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM:
            fprintf(f, "\"int64Param\":\"%lld\"", (long long)p->int64_param);
            break;
        case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM:
            fputs("\"stringParam\":", f);
            put_cstr(f, p->string_param);
            break;
        case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM:
            fputs("\"doubleParam\":", f);
            put_float(f, p->double_param, 0);
            break;
        case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM:
            fprintf(f, "\"uint64Param\":\"%llu\"", (unsigned long long)p->uint64_param);
            break;
        default:
            break;
        }
        fputc('}', f);
    }
    fputc('}', f);
    sdd_free(sorted);
}

static void put_contents(FILE *f, const Contents *c)
{
    const char *sep = "";
    size_t i;
    fputc('{', f);
#define LIST(field, name, each)                                                                    \
    if (c->n_##field) {                                                                            \
        fprintf(f, "%s\"" name "\":[", sep);                                                       \
        for (i = 0; i < c->n_##field; i++) {                                                       \
            if (i)                                                                                 \
                fputc(',', f);                                                                     \
            each;                                                                                  \
        }                                                                                          \
        fputc(']', f);                                                                             \
        sep = ",";                                                                                 \
    }
    LIST(bool_contents, "boolContents", fputs(c->bool_contents[i] ? "true" : "false", f))
    LIST(int_contents, "intContents", fprintf(f, "%d", (int)c->int_contents[i]))
    LIST(int64_contents, "int64Contents", fprintf(f, "\"%lld\"", (long long)c->int64_contents[i]))
    LIST(uint_contents, "uintContents", fprintf(f, "%u", (unsigned)c->uint_contents[i]))
    LIST(uint64_contents, "uint64Contents",
         fprintf(f, "\"%llu\"", (unsigned long long)c->uint64_contents[i]))
    LIST(fp32_contents, "fp32Contents", put_float(f, c->fp32_contents[i], 1))
    LIST(fp64_contents, "fp64Contents", put_float(f, c->fp64_contents[i], 0))
    LIST(bytes_contents, "bytesContents",
         put_b64(f, c->bytes_contents[i].data, c->bytes_contents[i].len))
#undef LIST
    fputc('}', f);
}

/* ------------------------------------------------------------ raw contents */

/* Bytes per element of datatype; 0 for BYTES; -1 for a datatype not known here. */
static int dt_width(const char *dt)
{
    static const struct {
        const char *name;
        int width;
    } t[] = {{"BOOL", 1}, {"UINT8", 1}, {"UINT16", 2}, {"UINT32", 4}, {"UINT64", 8},
             {"INT8", 1}, {"INT16", 2}, {"INT32", 4},  {"INT64", 8},  {"FP16", 2},
             {"BF16", 2}, {"FP32", 4},  {"FP64", 8},   {"BYTES", 0}};
    size_t i;
    for (i = 0; dt != NULL && i < sizeof(t) / sizeof(t[0]); i++)
        if (strcmp(dt, t[i].name) == 0)
            return t[i].width;
    return -1;
}

/* Whether raw decodes as datatype dt: whole elements, BYTES length prefixes in bounds. */
static int raw_ok(const char *dt, const ProtobufCBinaryData *raw)
{
    int w = dt_width(dt);
    size_t at = 0;
    if (w > 0)
        return raw->len % (size_t)w == 0;
    if (w < 0)
        return 0;
    while (at < raw->len) {
        uint32_t n;
        if (raw->len - at < 4)
            return 0;
        n = (uint32_t)raw->data[at] | (uint32_t)raw->data[at + 1] << 8 |
            (uint32_t)raw->data[at + 2] << 16 | (uint32_t)raw->data[at + 3] << 24;
        at += 4;
        if (n > raw->len - at)
            return 0;
        at += n;
    }
    return 1;
}

static uint64_t le(const uint8_t *p, int w)
{
    uint64_t v = 0;
    int i;
    for (i = w - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* The typed contents raw stands for (raw_ok first), as protojson writes them. */
static void put_raw_contents(FILE *f, const char *dt, const ProtobufCBinaryData *raw)
{
    int w = dt_width(dt);
    size_t i, n = w > 0 ? raw->len / (size_t)w : 0;
    const uint8_t *p = raw->data;
    const char *name;
    if (w == 0) {
        size_t at = 0, k = 0;
        fputs("{\"bytesContents\":[", f);
        while (at < raw->len) {
            uint32_t len = (uint32_t)le(p + at, 4);
            fputs(k++ ? "," : "", f);
            put_b64(f, p + at + 4, len);
            at += 4 + (size_t)len;
        }
        fputs("]}", f);
        return;
    }
    if (n == 0) {
        fputs("{}", f);
        return;
    }
    name = strcmp(dt, "BOOL") == 0         ? "boolContents"
           : strncmp(dt, "UINT64", 6) == 0 ? "uint64Contents"
           : strncmp(dt, "UINT", 4) == 0   ? "uintContents"
           : strcmp(dt, "INT64") == 0      ? "int64Contents"
           : strncmp(dt, "INT", 3) == 0    ? "intContents"
           : strcmp(dt, "FP64") == 0       ? "fp64Contents"
                                           : "fp32Contents";
    fprintf(f, "{\"%s\":[", name);
    for (i = 0; i < n; i++) {
        uint64_t v = le(p + i * (size_t)w, w);
        if (i)
            fputc(',', f);
        if (strcmp(dt, "BOOL") == 0) {
            fputs(v ? "true" : "false", f);
        } else if (strcmp(dt, "UINT64") == 0) {
            fprintf(f, "\"%llu\"", (unsigned long long)v);
        } else if (dt[0] == 'U') {
            fprintf(f, "%llu", (unsigned long long)v);
        } else if (strcmp(dt, "INT64") == 0) {
            fprintf(f, "\"%lld\"", (long long)(int64_t)v);
        } else if (dt[0] == 'I') {
            int64_t s = w == 1 ? (int8_t)v : w == 2 ? (int16_t)v : (int32_t)v;
            fprintf(f, "%lld", (long long)s);
        } else if (strcmp(dt, "FP16") == 0) {
            put_float(f, half_to_float((uint16_t)v), 1);
        } else if (strcmp(dt, "BF16") == 0) {
            uint32_t b = (uint32_t)v << 16;
            float x;
            memcpy(&x, &b, 4);
            put_float(f, x, 1);
        } else if (w == 4) {
            uint32_t b = (uint32_t)v;
            float x;
            memcpy(&x, &b, 4);
            put_float(f, x, 1);
        } else {
            double x;
            memcpy(&x, &v, 8);
            put_float(f, x, 0);
        }
    }
    fputs("]}", f);
}

static int contents_empty(const Contents *c)
{
    return c == NULL ||
           (c->n_bool_contents == 0 && c->n_int_contents == 0 && c->n_int64_contents == 0 &&
            c->n_uint_contents == 0 && c->n_uint64_contents == 0 && c->n_fp32_contents == 0 &&
            c->n_fp64_contents == 0 && c->n_bytes_contents == 0);
}

/*
 * Which raw entry each tensor's data is in, as upstream's CLI pairs them: the
 * i-th raw entry belongs to the i-th tensor without typed contents. rawof[t] is the
 * index or -1. Returns 1 when every raw entry found its tensor and decodes (the
 * raw list is then shown as typed contents), else 0 (shown as it is, base64).
 */
static int pair_raw(long *rawof, size_t nt, const char *const *dts, const Contents *const *cs,
                    size_t nraw, const ProtobufCBinaryData *raw)
{
    size_t t, r = 0;
    for (t = 0; t < nt; t++) {
        rawof[t] = -1;
        if (r < nraw && contents_empty(cs[t])) {
            if (!raw_ok(dts[t], &raw[r]))
                return 0;
            rawof[t] = (long)r++;
        }
    }
    return r == nraw;
}

static void put_tensor(FILE *f, const char *name, const char *dt, size_t nshape,
                       const int64_t *shape, size_t nparams, void *params, const Contents *c,
                       const ProtobufCBinaryData *raw)
{
    const char *sep = "";
    size_t i;
    fputc('{', f);
    if (name != NULL && *name) {
        fputs("\"name\":", f);
        put_cstr(f, name);
        sep = ",";
    }
    if (dt != NULL && *dt) {
        fprintf(f, "%s\"datatype\":", sep);
        put_cstr(f, dt);
        sep = ",";
    }
    if (nshape) {
        fprintf(f, "%s\"shape\":[", sep);
        for (i = 0; i < nshape; i++)
            fprintf(f, "%s\"%lld\"", i ? "," : "", (long long)shape[i]);
        fputc(']', f);
        sep = ",";
    }
    if (nparams) {
        put_params(f, sep, nparams, params);
        sep = ",";
    }
    if (raw != NULL) {
        fprintf(f, "%s\"contents\":", sep);
        put_raw_contents(f, dt, raw);
    } else if (c != NULL) {
        fprintf(f, "%s\"contents\":", sep);
        put_contents(f, c);
    }
    fputc('}', f);
}

static void put_head(FILE *f, const char **sep, const char *model, const char *version,
                     const char *id, size_t nparams, void *params)
{
    if (model != NULL && *model) {
        fputs("\"modelName\":", f);
        put_cstr(f, model);
        *sep = ",";
    }
    if (version != NULL && *version) {
        fprintf(f, "%s\"modelVersion\":", *sep);
        put_cstr(f, version);
        *sep = ",";
    }
    if (id != NULL && *id) {
        fprintf(f, "%s\"id\":", *sep);
        put_cstr(f, id);
        *sep = ",";
    }
    if (nparams) {
        put_params(f, *sep, nparams, params);
        *sep = ",";
    }
}

static void put_raw_list(FILE *f, const char *sep, const char *name, size_t n,
                         const ProtobufCBinaryData *raw)
{
    size_t i;
    if (n == 0)
        return;
    fprintf(f, "%s\"%s\":[", sep, name);
    for (i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        put_b64(f, raw[i].data, raw[i].len);
    }
    fputc(']', f);
}

int cli_pbjson_value(FILE *f, const uint8_t *value, size_t len, int outputs, const char *tensor)
{
    const char *sep = "";
    long *rawof = NULL;
    const char **dts = NULL;
    const Contents **cs = NULL;
    size_t i, nt;
    int decoded, found = 0;
    if (!outputs) {
        Req *r = inference__model_infer_request__unpack(NULL, len, value);
        if (r == NULL)
            return -1;
        nt = r->n_inputs;
        rawof = sdd_calloc(nt + 1, sizeof(*rawof));
        dts = sdd_calloc(nt + 1, sizeof(*dts));
        cs = sdd_calloc(nt + 1, sizeof(*cs));
        if (rawof == NULL || dts == NULL || cs == NULL) {
            inference__model_infer_request__free_unpacked(r, NULL);
            sdd_free(rawof);
            sdd_free(dts);
            sdd_free(cs);
            return -1;
        }
        for (i = 0; i < nt; i++) {
            dts[i] = r->inputs[i]->datatype;
            cs[i] = r->inputs[i]->contents;
        }
        decoded = pair_raw(rawof, nt, dts, cs, r->n_raw_input_contents, r->raw_input_contents);
        if (tensor == NULL) {
            fputc('{', f);
            put_head(f, &sep, r->model_name, r->model_version, r->id, r->n_parameters,
                     r->parameters);
        }
        for (i = 0; i < nt; i++) {
            const Inference__ModelInferRequest__InferInputTensor *t = r->inputs[i];
            if (tensor != NULL && (found || strcmp(t->name, tensor) != 0))
                continue;
            if (tensor == NULL)
                fprintf(f, "%s%s", i ? "," : sep, i ? "" : "\"inputs\":[");
            put_tensor(f, t->name, t->datatype, t->n_shape, t->shape, t->n_parameters,
                       t->parameters, t->contents,
                       decoded && rawof[i] >= 0 ? &r->raw_input_contents[rawof[i]] : NULL);
            found = 1;
        }
        if (tensor == NULL) {
            if (nt) {
                fputc(']', f);
                sep = ",";
            }
            for (i = 0; i < r->n_outputs; i++) {
                const Inference__ModelInferRequest__InferRequestedOutputTensor *o = r->outputs[i];
                fprintf(f, "%s", i ? "," : "");
                if (i == 0)
                    fprintf(f, "%s\"outputs\":[", sep);
                fputc('{', f);
                if (*o->name) {
                    fputs("\"name\":", f);
                    put_cstr(f, o->name);
                }
                put_params(f, *o->name ? "," : "", o->n_parameters, o->parameters);
                fputc('}', f);
            }
            if (r->n_outputs) {
                fputc(']', f);
                sep = ",";
            }
            if (!decoded)
                put_raw_list(f, sep, "rawInputContents", r->n_raw_input_contents,
                             r->raw_input_contents);
            fputc('}', f);
            found = 1;
        }
        inference__model_infer_request__free_unpacked(r, NULL);
    } else {
        Resp *r = inference__model_infer_response__unpack(NULL, len, value);
        if (r == NULL)
            return -1;
        nt = r->n_outputs;
        rawof = sdd_calloc(nt + 1, sizeof(*rawof));
        dts = sdd_calloc(nt + 1, sizeof(*dts));
        cs = sdd_calloc(nt + 1, sizeof(*cs));
        if (rawof == NULL || dts == NULL || cs == NULL) {
            inference__model_infer_response__free_unpacked(r, NULL);
            sdd_free(rawof);
            sdd_free(dts);
            sdd_free(cs);
            return -1;
        }
        for (i = 0; i < nt; i++) {
            dts[i] = r->outputs[i]->datatype;
            cs[i] = r->outputs[i]->contents;
        }
        decoded = pair_raw(rawof, nt, dts, cs, r->n_raw_output_contents, r->raw_output_contents);
        if (tensor == NULL) {
            fputc('{', f);
            put_head(f, &sep, r->model_name, r->model_version, r->id, r->n_parameters,
                     r->parameters);
        }
        for (i = 0; i < nt; i++) {
            const Inference__ModelInferResponse__InferOutputTensor *t = r->outputs[i];
            if (tensor != NULL && (found || strcmp(t->name, tensor) != 0))
                continue;
            if (tensor == NULL)
                fprintf(f, "%s%s", i ? "," : sep, i ? "" : "\"outputs\":[");
            put_tensor(f, t->name, t->datatype, t->n_shape, t->shape, t->n_parameters,
                       t->parameters, t->contents,
                       decoded && rawof[i] >= 0 ? &r->raw_output_contents[rawof[i]] : NULL);
            found = 1;
        }
        if (tensor == NULL) {
            if (nt) {
                fputc(']', f);
                sep = ",";
            }
            if (!decoded)
                put_raw_list(f, sep, "rawOutputContents", r->n_raw_output_contents,
                             r->raw_output_contents);
            fputc('}', f);
            found = 1;
        }
        inference__model_infer_response__free_unpacked(r, NULL);
    }
    sdd_free(rawof);
    sdd_free(dts);
    sdd_free(cs);
    return found ? 1 : 0;
}
