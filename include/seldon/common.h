/*
 * libseldon core: exports, error codes, the detailed per-thread error
 * message, allocator hooks, logging and byte buffers.
 *
 * Thread safety: every function here may be called from any thread, except
 * seldon_set_allocator(), which must run before any other libseldon call, and
 * seldon_set_log(), which must not race with logging calls from other threads.
 */
#ifndef SELDON_COMMON_H
#define SELDON_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "version.h"

#if defined(_WIN32)
#define SELDON_API __declspec(dllexport)
#elif defined(__GNUC__)
#define SELDON_API __attribute__((visibility("default")))
#else
#define SELDON_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every error code, in one list: name, value, description. Functions return
 * 0 on success and one of these (negative) on failure.
 */
#define SELDON_ERROR_MAP(X)                                                                        \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EPARSE, -3, "malformed input")                                                               \
    X(ERANGE, -4, "value out of range")                                                            \
    X(ESHAPE, -5, "shape or size mismatch")                                                        \
    X(EDATATYPE, -6, "wrong or unknown datatype")                                                  \
    X(ENOTFOUND, -7, "not found")                                                                  \
    X(EEXIST, -8, "already exists")                                                                \
    X(ETOOBIG, -9, "exceeds a limit")                                                              \
    X(EUNSUPPORTED, -10, "not supported")                                                          \
    X(ESTATE, -11, "invalid state")                                                                \
    X(EIO, -12, "input/output error")                                                              \
    X(EUNAVAIL, -13, "unavailable")                                                                \
    X(ETIMEDOUT, -14, "timed out")                                                                 \
    X(ECANCELED, -15, "canceled")                                                                  \
    X(EVERSION, -16, "incompatible version")                                                       \
    X(EINTERNAL, -17, "internal error")

enum seldon_error {
    SELDON_OK = 0,
#define SELDON_ERROR_ENUM_(name, value, text) SELDON_##name = value,
    SELDON_ERROR_MAP(SELDON_ERROR_ENUM_)
#undef SELDON_ERROR_ENUM_
};

/* The version of the loaded library, e.g. "0.1.0". Static storage. */
SELDON_API const char *seldon_version(void);

/* SELDON_VERSION_NUMBER of the loaded library. */
SELDON_API int32_t seldon_version_number(void);

/* Short text for an error code ("invalid argument"). Static storage; never NULL. */
SELDON_API const char *seldon_strerror(int32_t code);

/* Symbolic name for an error code ("SELDON_EINVAL"). Static storage; never NULL. */
SELDON_API const char *seldon_error_name(int32_t code);

/*
 * The detailed message of the last failure on this thread, naming what failed,
 * e.g. "inputs[1].data[37]: expected a number". Borrowed: valid until the next
 * libseldon call on this thread. "" when the last call left no message.
 */
SELDON_API const char *seldon_last_error(void);

/* The code of the last failure on this thread, 0 if none was recorded. */
SELDON_API int32_t seldon_last_error_code(void);

/* Forget the last failure on this thread. */
SELDON_API void seldon_clear_error(void);

/*
 * Records code and message (copied; NULL for none) as this thread's last
 * failure, for hosts and daemons that report their own errors the same way
 * libseldon does. Returns code, so a failure reads `return seldon_set_error(...)`.
 */
SELDON_API int32_t seldon_set_error(int32_t code, const char *message);

/*
 * Allocator hooks. Every allocation libseldon makes goes through these.
 * Set them once, before any other libseldon call; NULL restores the C
 * library's malloc/realloc/free. realloc_fn and free_fn receive only pointers
 * that the same hooks returned.
 */
typedef struct seldon_allocator {
    uint32_t version; /* SELDON_ALLOCATOR_VERSION */
    void *(*malloc_fn)(void *user_data, size_t size);
    void *(*realloc_fn)(void *user_data, void *ptr, size_t size);
    void (*free_fn)(void *user_data, void *ptr);
    void *user_data;
} seldon_allocator;

#define SELDON_ALLOCATOR_VERSION 1
#define SELDON_ALLOCATOR_INIT {SELDON_ALLOCATOR_VERSION, NULL, NULL, NULL, NULL}

/* Copies *alloc. Returns SELDON_EINVAL when a hook is missing or the version unknown. */
SELDON_API int seldon_set_allocator(const seldon_allocator *alloc);

/* Allocate and free through the hooks; for buffers that libseldon hands out. */
SELDON_API void *seldon_malloc(size_t size);
SELDON_API void *seldon_calloc(size_t n, size_t size);
SELDON_API void *seldon_realloc(void *ptr, size_t size);
SELDON_API void seldon_free(void *ptr);

/* Log levels: a message is emitted when its level <= the configured level. */
#define SELDON_LOG_NONE 0
#define SELDON_LOG_ERROR 1
#define SELDON_LOG_WARN 2
#define SELDON_LOG_INFO 3
#define SELDON_LOG_DEBUG 4
#define SELDON_LOG_TRACE 5

/*
 * Receives one log line, without a trailing newline. message is borrowed,
 * valid for the call only. Called on the thread that logged.
 */
typedef void (*seldon_log_fn)(void *user_data, int32_t level, const char *message);

/*
 * Routes libseldon's log lines to fn (NULL: discard them) up to level.
 * The default is no callback.
 */
SELDON_API void seldon_set_log(seldon_log_fn fn, void *user_data, int32_t level);

/*
 * Emits one line through the configured log callback when level is enabled:
 * the host's own lines then share libseldon's destination and filter.
 */
SELDON_API void seldon_log(int32_t level, const char *message);

/* 1 when lines of this level reach the callback, so callers can skip formatting. */
SELDON_API int32_t seldon_log_enabled(int32_t level);

/* The name of a level ("error", "warn", "info", "debug", "trace"). */
SELDON_API const char *seldon_log_level_name(int32_t level);

/*
 * A growable byte buffer that encoders append to. Start from SELDON_BUF_INIT
 * (or all zeroes); data is owned by the buffer and released with
 * seldon_buf_free(). Reusing one buffer across calls avoids reallocations:
 * set len to 0 to start over.
 */
typedef struct seldon_buf {
    uint8_t *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
} seldon_buf;

#define SELDON_BUF_INIT {NULL, 0, 0}

/* Makes room for at least extra more bytes. */
SELDON_API int seldon_buf_reserve(seldon_buf *buf, size_t extra);

/* Releases the storage and resets the buffer to empty. NULL is allowed. */
SELDON_API void seldon_buf_free(seldon_buf *buf);

#ifdef __cplusplus
}
#endif

#endif
