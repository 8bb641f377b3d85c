#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"
#include "seldon/common.h"

static const char *prog = "seldon";

int32_t sdd_log_level_parse(const char *name)
{
    int32_t level;
    for (level = SELDON_LOG_ERROR; level <= SELDON_LOG_TRACE; level++)
        if (strcmp(name, seldon_log_level_name(level)) == 0)
            return level;
    if (strcmp(name, "warning") == 0)
        return SELDON_LOG_WARN;
    return -1;
}

static void to_stderr(void *user_data, int32_t level, const char *message)
{
    struct timeval tv;
    struct tm tm;
    char stamp[32];
    (void)user_data;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line: stdio's lock keeps lines from different threads whole. */
    fprintf(stderr, "%s.%03dZ %-5s %s: %s\n", stamp, (int)(tv.tv_usec / 1000),
            seldon_log_level_name(level), prog, message);
}

void sdd_log_init(const char *program, int32_t level)
{
    prog = program;
    seldon_set_log(to_stderr, NULL, level);
}
