/*
 * oip-convert: converts Open Inference Protocol messages between REST JSON
 * and gRPC protobuf, through libseldon's codec.
 *
 *   oip-convert [--response] [--from json|pb] [--to json|pb] [--typed] [FILE]
 *
 * Reads FILE (or stdin) and writes the converted message to stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <seldon/seldon.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: oip-convert [--response] [--from json|pb] [--to json|pb] [--typed] [FILE]\n"
               "Converts an inference request (or, with --response, a response) between\n"
               "REST JSON and protobuf (inference.ModelInferRequest/Response).\n"
               "Defaults: --from json --to pb. --typed writes typed *_contents fields.\n");
}

static int read_all(FILE *f, seldon_buf *buf)
{
    for (;;) {
        size_t n;
        if (seldon_buf_reserve(buf, 65536) != 0)
            return -1;
        n = fread(buf->data + buf->len, 1, buf->cap - buf->len, f);
        buf->len += n;
        if (n == 0)
            return ferror(f) ? -1 : 0;
    }
}

int main(int argc, char **argv)
{
    int32_t kind = SELDON_MSG_REQUEST;
    int from_pb = 0, to_pb = 1;
    uint32_t flags = 0;
    const char *path = NULL;
    seldon_buf in = SELDON_BUF_INIT, out = SELDON_BUF_INIT;
    seldon_msg *msg = NULL;
    FILE *f = stdin;
    int i, rc, status = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--response") == 0) {
            kind = SELDON_MSG_RESPONSE;
        } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            from_pb = strcmp(argv[++i], "pb") == 0;
        } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to_pb = strcmp(argv[++i], "pb") == 0;
        } else if (strcmp(argv[i], "--typed") == 0) {
            flags |= SELDON_ENCODE_PB_TYPED;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("oip-convert (libseldon) %s\n", seldon_version());
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (path != NULL && strcmp(path, "-") != 0) {
        f = fopen(path, "rb");
        if (f == NULL) {
            perror(path);
            return 1;
        }
    }
    if (read_all(f, &in) != 0) {
        fprintf(stderr, "oip-convert: cannot read input\n");
        goto out;
    }
    rc = seldon_msg_new(&msg, kind);
    if (rc == 0)
        rc = from_pb ? seldon_msg_decode_pb(msg, in.data, in.len, 0)
                     : seldon_msg_decode_json(msg, in.data, in.len, 0, 0);
    if (rc == 0)
        rc = to_pb ? seldon_msg_encode_pb(&out, msg, flags)
                   : seldon_msg_encode_json(&out, NULL, msg, 0);
    if (rc != 0) {
        fprintf(stderr, "oip-convert: %s: %s\n", seldon_strerror(rc), seldon_last_error());
        goto out;
    }
    if (fwrite(out.data, 1, out.len, stdout) != out.len)
        goto out;
    if (!to_pb)
        fputc('\n', stdout);
    status = 0;
out:
    if (f != stdin)
        fclose(f);
    seldon_msg_free(msg);
    seldon_buf_free(&in);
    seldon_buf_free(&out);
    return status;
}
