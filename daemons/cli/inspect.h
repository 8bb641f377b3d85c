/*
 * seldon pipeline inspect (inspect.c): a pipeline's Kafka topics, read back and
 * printed as upstream's CLI prints them.
 */
#ifndef SELDON_CLI_INSPECT_H
#define SELDON_CLI_INSPECT_H

#include "cli.h"

/* The command: expr is <p>[.<step>[.inputs|.outputs[.<tensor>]]]. Exit status. */
int cli_inspect(cli *c, const char *expr);

#endif
