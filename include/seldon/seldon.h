/*
 * libseldon: everything public, in one include.
 *
 * Thread safety: see each header.
 */
#ifndef SELDON_SELDON_H
#define SELDON_SELDON_H

#include "version.h"
#include "common.h"
#include "oip.h"
#include "runtime.h"
#include "repository.h"
#include "metrics.h"
#include "service.h"
#include "router.h"
#include "manifest.h"
#include "scheduler.h"
#include "pipeline.h"
#include "pipeline_host.h"
#include "kafka.h"

#endif
