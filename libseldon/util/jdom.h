/*
 * A small JSON document model and writer, for configuration files
 * (model-settings.json, manifests converted to JSON) and control-plane
 * bodies (metadata, repository index). The inference hot path does not use
 * it: the OIP codec streams straight into messages.
 *
 * Documents live in an arena; strings are NUL-terminated and unescaped.
 */
#ifndef SDN_JDOM_H
#define SDN_JDOM_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "oip/msg.h"

#define SDN_JV_NULL 0
#define SDN_JV_BOOL 1
#define SDN_JV_NUMBER 2
#define SDN_JV_STRING 3
#define SDN_JV_ARRAY 4
#define SDN_JV_OBJECT 5

typedef struct sdn_jv sdn_jv;
typedef struct sdn_jmember sdn_jmember;

struct sdn_jv {
    int32_t type;
    int32_t b;         /* BOOL */
    double d;          /* NUMBER */
    int64_t i;         /* NUMBER, when is_int */
    int32_t is_int;    /* the literal was an integer that fits int64 */
    sdn_str s;         /* STRING */
    sdn_jv *items;     /* ARRAY */
    sdn_jmember *members; /* OBJECT, in document order */
    size_t n;          /* ARRAY / OBJECT length */
    const char *raw;   /* the value's text in the source document */
    size_t raw_len;
};

struct sdn_jmember {
    sdn_str key;
    sdn_jv value;
};

/*
 * Parses text[0..len) into *out (allocated in a). On error returns
 * SELDON_EPARSE with a message naming the source (what, e.g. a file name),
 * the byte offset and the path, e.g. "model-settings.json: at byte 17
 * (parameters.uri): expected a string".
 */
int sdn_json_parse(sdn_jv **out, sdn_arena *a, const char *text, size_t len, const char *what);

/* The member called key of an object; NULL if absent or v is not an object. */
const sdn_jv *sdn_jv_get(const sdn_jv *v, const char *key);

/* Writer helpers: append JSON text to a buffer (escaped strings, shortest numbers). */
int sdn_jw_string(seldon_buf *b, const char *s, size_t len);
int sdn_jw_raw(seldon_buf *b, const char *s, size_t len);
int sdn_jw_int(seldon_buf *b, int64_t v);
int sdn_jw_double(seldon_buf *b, double v);

#endif
