/*
 * Manifests, inside: a YAML document becomes a small tree (tree.c), which
 * the schema walk (parse.c) turns into a seldon_resource. A tree is built per
 * document in a scratch arena, so kind and metadata.name are known before
 * spec is read whatever the field order, and errors can name them.
 */
#ifndef SDN_MANIFEST_H
#define SDN_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "core/core.h"
#include "seldon/manifest.h"

/* Limits beyond those of the header: what one document may hold. */
#define SDN_MF_DEPTH_MAX 64      /* nested collections */
#define SDN_MF_NODES_MAX 1000000 /* scalars and collections in one document */
#define SDN_MF_MAPKEY_MAX 256    /* bytes in a tensorMap key (it is a JSON key when saved) */

#define SDN_MF_SCALAR 1
#define SDN_MF_SEQ 2
#define SDN_MF_MAP 3

typedef struct sdn_mf_node sdn_mf_node;
struct sdn_mf_node {
    uint8_t type;
    uint8_t plain; /* a plain scalar whose type comes from its text (null, bool, number) */
    uint32_t line; /* from 1 */
    const char *s; /* SCALAR: NUL-terminated, no NUL inside */
    size_t len;
    sdn_mf_node *first, *last; /* children; a map alternates key, value */
    sdn_mf_node *next;
    size_t n; /* SEQ: items; MAP: pairs */
};

/* Reads the documents of one text in turn. */
typedef struct sdn_mf_reader {
    yaml_parser_t y;
    yaml_event_t ev;
    int have;   /* ev holds an event to delete */
    int ended;  /* the stream end was read */
    int in_doc; /* between a document's start and end */
    const char *src;
    size_t doc; /* documents started so far */
} sdn_mf_reader;

void sdn_mf_reader_init(sdn_mf_reader *r, const char *data, size_t len, const char *src);
void sdn_mf_reader_free(sdn_mf_reader *r);

/*
 * The next document's tree, allocated in scratch: returns 1 with *root set
 * (NULL for an empty document) and r->doc its position, 0 at the end of the
 * stream, or a negative code with the error set.
 */
int sdn_mf_reader_next(sdn_mf_reader *r, sdn_arena *scratch, sdn_mf_node **root);

/*
 * The tree of one small JSON document (the canonical form), built by the JSON
 * reader: 0 with *root set, 1 when the text is for libyaml to read (not JSON,
 * too big, ...), or SELDON_ENOMEM.
 */
int sdn_mf_json_tree(const char *data, size_t len, sdn_arena *scratch, sdn_mf_node **root);

/* seldon_manifest_parse() with flags: SDN_MF_YAML_ONLY reads JSON with libyaml too (tests). */
#define SDN_MF_YAML_ONLY 1
int sdn_manifest_parse_ex(seldon_manifest **out, const char *data, size_t len, const char *source,
                          int flags);

/* Plain-scalar typing (YAML 1.2 core schema). */
int sdn_mf_is_null(const sdn_mf_node *n);
int sdn_mf_is_bool(const sdn_mf_node *n, int *value);
int sdn_mf_is_number(const sdn_mf_node *n);

/* Quotes text for an error message: printable, cut to fit cap with "...". */
void sdn_mf_quote(char *out, size_t cap, const char *s, size_t len);

/* The manifest: every resource and everything they point to lives in one arena. */
struct seldon_manifest {
    sdn_arena arena;
    seldon_resource *res;
    size_t count, cap;
};

#endif
