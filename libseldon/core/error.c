#include <stdio.h>
#include <string.h>

#include "core.h"
#include "util/jsonstr.h"

#define SDN_ERRMSG_MAX 512

/* Per-thread so that concurrent decoders each report their own failure. */
static _Thread_local char last_message[SDN_ERRMSG_MAX];
static _Thread_local int32_t last_code;

const char *seldon_strerror(int32_t code)
{
    switch (code) {
    case SELDON_OK:
        return "success";
#define SDN_STRERROR_CASE(name, value, text)                                                       \
    case value:                                                                                    \
        return text;
        SELDON_ERROR_MAP(SDN_STRERROR_CASE)
#undef SDN_STRERROR_CASE
    default:
        return "unknown error";
    }
}

const char *seldon_error_name(int32_t code)
{
    switch (code) {
    case SELDON_OK:
        return "SELDON_OK";
#define SDN_ERRNAME_CASE(name, value, text)                                                        \
    case value:                                                                                    \
        return "SELDON_" #name;
        SELDON_ERROR_MAP(SDN_ERRNAME_CASE)
#undef SDN_ERRNAME_CASE
    default:
        return "SELDON_EUNKNOWN";
    }
}

const char *seldon_last_error(void)
{
    return last_message;
}

int32_t seldon_last_error_code(void)
{
    return last_code;
}

void seldon_clear_error(void)
{
    last_message[0] = '\0';
    last_code = 0;
}

int32_t seldon_set_error(int32_t code, const char *message)
{
    if (message == NULL)
        return sdn_error(code, NULL);
    return sdn_error(code, "%s", message);
}

int sdn_verror(int code, const char *fmt, va_list ap)
{
    last_code = code;
    if (fmt == NULL) {
        snprintf(last_message, sizeof(last_message), "%s", seldon_strerror(code));
    } else {
        vsnprintf(last_message, sizeof(last_message), fmt, ap);
    }
    /* Messages quote what clients sent and end up in JSON and grpc-message: keep them UTF-8. */
    sdn_utf8_repair(last_message, sizeof(last_message));
    return code;
}

int sdn_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sdn_verror(code, fmt, ap);
    va_end(ap);
    return code;
}

int sdn_error_prefix(int code, const char *fmt, ...)
{
    char prefix[SDN_ERRMSG_MAX];
    char old[SDN_ERRMSG_MAX];
    va_list ap;

    memcpy(old, last_message, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    last_code = code;
    if (old[0] != '\0')
        snprintf(last_message, sizeof(last_message), "%.200s: %.300s", prefix, old);
    else
        snprintf(last_message, sizeof(last_message), "%.200s: %s", prefix, seldon_strerror(code));
    sdn_utf8_repair(last_message, sizeof(last_message));
    return code;
}

const char *seldon_version(void)
{
    return SELDON_VERSION_STRING;
}

int32_t seldon_version_number(void)
{
    return SELDON_VERSION_NUMBER;
}
