/*
 * libseldon version numbers.
 *
 * Thread safety: constants only; seldon_version() may be called from any thread.
 */
#ifndef SELDON_VERSION_H
#define SELDON_VERSION_H

#define SELDON_VERSION_MAJOR 0
#define SELDON_VERSION_MINOR 1
#define SELDON_VERSION_PATCH 0
#define SELDON_VERSION_STRING "0.1.0"

/* One comparable number: major * 10000 + minor * 100 + patch. */
#define SELDON_VERSION_NUMBER                                                                      \
    (SELDON_VERSION_MAJOR * 10000 + SELDON_VERSION_MINOR * 100 + SELDON_VERSION_PATCH)

#endif
