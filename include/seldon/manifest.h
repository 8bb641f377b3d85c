/*
 * Seldon's resource manifests: `apiVersion: mlops.seldon.io/v1alpha1`,
 * kinds Model, Server, Pipeline and Experiment, several YAML documents per
 * file (JSON is read too: it is YAML). Parsing is strict: an unknown or
 * misspelled field, a wrong type or a broken rule is an error that names the
 * source, the document and the path, e.g.
 *   `model.yaml: document 2 (Model "iris"): spec.storagUri: unknown field`
 * The format and the rules are in docs/manifests.md.
 *
 * Thread safety: a parsed manifest is immutable; any thread may read it. The
 * functions are reentrant.
 */
#ifndef SELDON_MANIFEST_H
#define SELDON_MANIFEST_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SELDON_MANIFEST_API_VERSION "mlops.seldon.io/v1alpha1"
#define SELDON_MANIFEST_FILE_MAX (64 << 20) /* bytes in one file */
#define SELDON_MANIFEST_DOCS_MAX 100000     /* documents in one file */
#define SELDON_MANIFEST_NAME_MAX 253        /* bytes in a resource name */

typedef enum seldon_kind {
    SELDON_KIND_MODEL = 1,
    SELDON_KIND_SERVER = 2,
    SELDON_KIND_PIPELINE = 3,
    SELDON_KIND_EXPERIMENT = 4
} seldon_kind;

/* "Model", "Server", "Pipeline", "Experiment"; NULL for another value. */
SELDON_API const char *seldon_kind_name(seldon_kind kind);

/* A name/value pair (parameters, tensorMap entries, labels). */
typedef struct seldon_kv {
    const char *name;
    const char *value;
} seldon_kv;

/*
 * Every string below is NUL-terminated and borrowed from the manifest that
 * holds it. An absent optional string is NULL; an absent list has count 0.
 */

/* kind: Model */
typedef struct seldon_model_spec {
    const char *storage_uri;         /* spec.storageUri (required, non-empty) */
    int64_t artifact_version;        /* spec.artifactVersion; -1 when absent */
    const char *model_type;          /* spec.modelType */
    const char *schema_uri;          /* spec.schemaUri */
    const char *secret_name;         /* spec.secretName */
    const char *const *requirements; /* spec.requirements, as written (modelType not added) */
    size_t requirements_count;
    int64_t memory_bytes;               /* spec.memory as bytes; -1 when absent */
    int32_t replicas;                   /* spec.replicas; 1 when absent (minReplicas if > 0) */
    int32_t min_replicas;               /* spec.minReplicas; 0 when absent */
    int32_t max_replicas;               /* spec.maxReplicas; 0 when absent (no bound) */
    const char *server;                 /* spec.server: a pin */
    int32_t preloaded;                  /* spec.preloaded: 0 or 1 */
    int32_t dedicated;                  /* spec.dedicated: 0 or 1 */
    int32_t logger_percent;             /* spec.logger.percent; -1 when absent */
    const char *explainer_type;         /* spec.explainer.type */
    const char *explainer_model_ref;    /* spec.explainer.modelRef */
    const char *explainer_pipeline_ref; /* spec.explainer.pipelineRef */
    const char *llm_model_ref;          /* spec.llm.modelRef */
    const char *llm_pipeline_ref;       /* spec.llm.pipelineRef */
    const seldon_kv *parameters;        /* spec.parameters[{name, value}] */
    size_t parameters_count;
    int32_t clean_topics_on_delete; /* spec.dataflow.cleanTopicsOnDelete: 0 or 1 */
} seldon_model_spec;

/* kind: Server */
typedef struct seldon_server_spec {
    const char *server_config;       /* spec.serverConfig */
    const char *const *capabilities; /* spec.capabilities (replace the defaults) */
    size_t capabilities_count;
    const char *const *extra_capabilities; /* spec.extraCapabilities (add to them) */
    size_t extra_capabilities_count;
    int32_t replicas;     /* spec.replicas; 1 when absent (minReplicas if > 0) */
    int32_t min_replicas; /* spec.minReplicas; 0 when absent */
    int32_t max_replicas; /* spec.maxReplicas; 0 when absent (no bound) */
    /* spec.memory, else the memory limit (else request) of podSpec's first container; -1 */
    int64_t memory_bytes;
} seldon_server_spec;

/* kind: Experiment */
typedef struct seldon_experiment_candidate {
    const char *name;
    int32_t weight;
} seldon_experiment_candidate;

typedef struct seldon_experiment_spec {
    const char *default_name;  /* spec.default */
    const char *resource_type; /* spec.resourceType: "model" (when absent) or "pipeline" */
    const seldon_experiment_candidate *candidates;
    size_t candidates_count;
    const char *mirror_name; /* spec.mirror.name */
    int32_t mirror_percent;  /* spec.mirror.percent; 0 when there is no mirror */
} seldon_experiment_spec;

/* kind: Pipeline (kept as written; compiling it into a DAG is the pipeline compiler's) */
typedef struct seldon_pipeline_batch {
    int32_t size;      /* 0 when absent */
    int64_t window_ms; /* 0 when absent */
    int32_t rolling;   /* 0 or 1 */
} seldon_pipeline_batch;

typedef struct seldon_pipeline_step {
    const char *name;
    const char *const *inputs;
    size_t inputs_count;
    const char *const *triggers;
    size_t triggers_count;
    const seldon_kv *tensor_map; /* in document order */
    size_t tensor_map_count;
    const char *inputs_join_type;   /* "inner" (when absent), "outer", "any"; never NULL */
    const char *triggers_join_type; /* "inner" (when absent), "outer", "any"; never NULL */
    int64_t join_window_ms;         /* -1 when absent */
    seldon_pipeline_batch batch;
} seldon_pipeline_step;

typedef struct seldon_pipeline_spec {
    const seldon_pipeline_step *steps;
    size_t steps_count;
    /* spec.input */
    const char *const *external_inputs;
    size_t external_inputs_count;
    const char *const *external_triggers;
    size_t external_triggers_count;
    const char *input_join_type;          /* spec.input.joinType; "inner" when absent */
    const char *input_triggers_join_type; /* spec.input.triggersJoinType; "inner" when absent */
    int64_t input_join_window_ms;         /* -1 when absent */
    const seldon_kv *input_tensor_map;
    size_t input_tensor_map_count;
    /* spec.output */
    const char *const *output_steps;
    size_t output_steps_count;
    const char *output_steps_join; /* "inner" (when absent), "outer", "any" */
    int64_t output_join_window_ms; /* -1 when absent */
    const seldon_kv *output_tensor_map;
    size_t output_tensor_map_count;
    int32_t allow_cycles;           /* 0 or 1 */
    int32_t max_step_revisits;      /* 0 when absent */
    int32_t clean_topics_on_delete; /* spec.dataflow.cleanTopicsOnDelete: 0 or 1 */
    /*
     * spec.timeoutMs, our extension (Seldon has none): how long a synchronous
     * call of this pipeline may wait for its answer, in ms; 0 when absent
     * (the gateway's or engine's default applies).
     */
    int64_t timeout_ms;
} seldon_pipeline_spec;

/* One document of a manifest. */
typedef struct seldon_resource {
    seldon_kind kind;
    const char *name;       /* metadata.name */
    const char *namespace_; /* metadata.namespace, or NULL */
    size_t document;        /* its position in the file, from 1 */
    union {
        seldon_model_spec model;
        seldon_server_spec server;
        seldon_experiment_spec experiment;
        seldon_pipeline_spec pipeline;
    } spec;
} seldon_resource;

typedef struct seldon_manifest seldon_manifest;

/*
 * Parses every document of a YAML (or JSON) text held in memory. source
 * names it in errors (NULL: "manifest"). Empty documents are skipped; a text
 * with no resource at all is an error. On failure seldon_last_error() names
 * source, document, resource and field, and the code is SELDON_EPARSE (not
 * YAML, wrong shape, unknown field, bad value, broken rule) or SELDON_ETOOBIG.
 * Caller owns *out; free with seldon_manifest_free().
 */
SELDON_API int seldon_manifest_parse(seldon_manifest **out, const char *data, size_t len,
                                     const char *source);

/* Reads and parses the file at path (named by its path in errors). SELDON_EIO when unreadable. */
SELDON_API int seldon_manifest_load(seldon_manifest **out, const char *path);

/* Frees a manifest and every resource it holds. NULL is allowed. */
SELDON_API void seldon_manifest_free(seldon_manifest *manifest);

/* The number of resources (non-empty documents). */
SELDON_API size_t seldon_manifest_count(const seldon_manifest *manifest);

/* The i-th resource, borrowed from the manifest; NULL past the end. */
SELDON_API const seldon_resource *seldon_manifest_at(const seldon_manifest *manifest, size_t i);

/*
 * Appends one resource as a canonical JSON document (apiVersion, kind,
 * metadata, spec; absent fields left out; defaults written) that
 * seldon_manifest_parse() reads back to an equal resource. Used to persist
 * specs and to show them in status.
 */
SELDON_API int seldon_resource_serialize(seldon_buf *out, const seldon_resource *resource);

/* 1 when both resources are equal field by field (document positions aside). */
SELDON_API int32_t seldon_resource_equal(const seldon_resource *a, const seldon_resource *b);

/*
 * Parses a Kubernetes memory quantity: a plain number of bytes, a decimal
 * suffix (k, M, G, T, P, E) or a binary one (Ki, Mi, Gi, Ti, Pi, Ei), with
 * an optional fraction ("1.5Gi"). SELDON_EPARSE on anything else,
 * SELDON_ERANGE above INT64_MAX.
 */
SELDON_API int seldon_parse_quantity(int64_t *out_bytes, const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif
