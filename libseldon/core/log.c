#include <stdio.h>

#include "core.h"

int32_t sdn_log_level = SELDON_LOG_NONE;
static seldon_log_fn log_fn;
static void *log_user_data;

void seldon_set_log(seldon_log_fn fn, void *user_data, int32_t level)
{
    log_fn = fn;
    log_user_data = user_data;
    sdn_log_level = fn ? level : SELDON_LOG_NONE;
}

const char *seldon_log_level_name(int32_t level)
{
    switch (level) {
    case SELDON_LOG_ERROR:
        return "error";
    case SELDON_LOG_WARN:
        return "warn";
    case SELDON_LOG_INFO:
        return "info";
    case SELDON_LOG_DEBUG:
        return "debug";
    case SELDON_LOG_TRACE:
        return "trace";
    default:
        return "none";
    }
}

void sdn_log_emit(int32_t level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    seldon_log_fn fn = log_fn;
    if (fn == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fn(log_user_data, level, line);
}

void seldon_log(int32_t level, const char *message)
{
    seldon_log_fn fn = log_fn;
    if (fn == NULL || level > sdn_log_level || level <= SELDON_LOG_NONE || message == NULL)
        return;
    fn(log_user_data, level, message);
}

int32_t seldon_log_enabled(int32_t level)
{
    return log_fn != NULL && level > SELDON_LOG_NONE && level <= sdn_log_level;
}
