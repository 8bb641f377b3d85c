/*
 * Daemon logging: libseldon's log callback, written to stderr as one line
 * per message: "2026-11-25T09:12:01.123Z info seldon-server: message".
 *
 * Thread safety: sdd_log_init() once, at start-up; the rest from any thread.
 */
#ifndef SDD_LOG_H
#define SDD_LOG_H

#include <stdint.h>

/* Parses a level name ("error", "warn", "info", "debug", "trace"); -1 if unknown. */
int32_t sdd_log_level_parse(const char *name);

/* Routes libseldon's log (and the daemon's, through sdd_log) to stderr up to level. */
void sdd_log_init(const char *program, int32_t level);

#endif
