/*
 * daemons/scheduler/rpc.c, the gRPC message framing shared by seldon-scheduler
 * and the seldon CLI: messages split anyhow across chunks come out whole, in
 * order; limits and compressed messages are refused; grpc-message decoding.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "rpc.h"

typedef struct got {
    char msgs[8][64];
    size_t lens[8];
    size_t n;
} got;

static int on_msg(void *user_data, const uint8_t *msg, size_t len)
{
    got *g = user_data;
    cr_assert(g->n < 8 && len < 64);
    memcpy(g->msgs[g->n], msg, len);
    g->lens[g->n++] = len;
    return 0;
}

static size_t framed(uint8_t *out, const char *text)
{
    size_t n = strlen(text);
    out[0] = 0;
    out[1] = 0;
    out[2] = 0;
    out[3] = (uint8_t)(n >> 8);
    out[4] = (uint8_t)n;
    memcpy(out + 5, text, n);
    return n + 5;
}

Test(rpc, messages_across_any_split)
{
    uint8_t wire[128];
    size_t len = framed(wire, "hello"), split;
    len += framed(wire + len, "");
    len += framed(wire + len, "world!");
    for (split = 0; split <= len; split++) {
        sdr_reader r = {SELDON_BUF_INIT, 0};
        got g;
        memset(&g, 0, sizeof(g));
        cr_assert_eq(sdr_reader_feed(&r, wire, split, on_msg, &g), 0);
        cr_assert_eq(sdr_reader_feed(&r, wire + split, len - split, on_msg, &g), 0);
        cr_assert_eq(g.n, 3, "split %zu", split);
        cr_assert(g.lens[0] == 5 && memcmp(g.msgs[0], "hello", 5) == 0);
        cr_assert_eq(g.lens[1], 0);
        cr_assert(g.lens[2] == 6 && memcmp(g.msgs[2], "world!", 6) == 0);
        cr_assert_eq(r.buf.len, 0);
        sdr_reader_free(&r);
    }
}

Test(rpc, byte_by_byte)
{
    uint8_t wire[64];
    size_t len = framed(wire, "abc"), i;
    sdr_reader r = {SELDON_BUF_INIT, 0};
    got g;
    memset(&g, 0, sizeof(g));
    for (i = 0; i < len; i++)
        cr_assert_eq(sdr_reader_feed(&r, wire + i, 1, on_msg, &g), 0);
    cr_assert(g.n == 1 && g.lens[0] == 3 && memcmp(g.msgs[0], "abc", 3) == 0);
    sdr_reader_free(&r);
}

Test(rpc, limits_and_compression_refused)
{
    uint8_t big[5] = {0, 0, 0, 1, 0}; /* 256 bytes announced */
    uint8_t zipped[6] = {1, 0, 0, 0, 1, 'x'};
    sdr_reader r = {SELDON_BUF_INIT, 100};
    got g;
    memset(&g, 0, sizeof(g));
    cr_assert_eq(sdr_reader_feed(&r, big, sizeof(big), on_msg, &g), -1);
    cr_assert(strstr(seldon_last_error(), "limit") != NULL, "%s", seldon_last_error());
    sdr_reader_free(&r);
    memset(&r, 0, sizeof(r));
    cr_assert_eq(sdr_reader_feed(&r, zipped, sizeof(zipped), on_msg, &g), -1);
    cr_assert(strstr(seldon_last_error(), "compressed") != NULL);
    cr_assert_eq(g.n, 0);
    sdr_reader_free(&r);
}

Test(rpc, grpc_message_decoding)
{
    char out[32];
    sdr_percent_decode(out, sizeof(out), "a%20b%25c%zz%4", 14);
    cr_assert_str_eq(out, "a b%c%zz%4");
    sdr_percent_decode(out, 4, "abcdef", 6);
    cr_assert_str_eq(out, "abc");
}

Test(rpc, status_codes)
{
    cr_assert_eq(sdr_status_of(0), SDR_OK);
    cr_assert_eq(sdr_status_of(SELDON_EPARSE), SDR_INVALID_ARGUMENT);
    cr_assert_eq(sdr_status_of(SELDON_ENOTFOUND), SDR_NOT_FOUND);
    cr_assert_eq(sdr_status_of(SELDON_EUNAVAIL), SDR_UNAVAILABLE);
    cr_assert_eq(sdr_status_of(SELDON_EINTERNAL), SDR_INTERNAL);
}
