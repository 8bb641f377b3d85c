/* Unit tests of the HTTP wire layer (daemons/common/http_wire.h). */
#include <criterion/criterion.h>
#include <string.h>

#include <http_parser.h>

#include "http_wire.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static char *request(const sdh_request_head *h)
{
    size_t n = sdh_request_head_size(h);
    cr_assert(n > 0);
    char *buf = malloc(n + 1);
    cr_assert_eq(sdh_request_head_write(buf, h), n);
    buf[n] = '\0';
    return buf;
}

Test(wire, request_head_with_length_and_host)
{
    sdh_header hs[] = {H("Content-Type", "application/json"), H("content-length", "999"),
                       H("Transfer-Encoding", "gzip")};
    sdh_request_head h = {"POST", 4, "/v2/models/m/infer", 18, hs, 3, "127.0.0.1:9000", 14, 42};
    char *s = request(&h);
    cr_assert_str_eq(s, "POST /v2/models/m/infer HTTP/1.1\r\n"
                        "Host: 127.0.0.1:9000\r\n"
                        "Content-Type: application/json\r\n"
                        "Content-Length: 42\r\n\r\n");
    free(s);
}

Test(wire, request_head_chunked_keeps_callers_host)
{
    sdh_header hs[] = {H("Host", "example")};
    sdh_request_head h = {"PUT", 3, "/x?a=1", 6, hs, 1, "ignored", 7, SDH_BODY_CHUNKED};
    char *s = request(&h);
    cr_assert_str_eq(s,
                     "PUT /x?a=1 HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n");
    free(s);
    sdh_request_head g = {"GET", 3, "/", 1, NULL, 0, NULL, 0, SDH_BODY_NONE};
    s = request(&g);
    cr_assert_str_eq(s, "GET / HTTP/1.1\r\n\r\n");
    free(s);
}

Test(wire, request_head_refuses_injection)
{
    sdh_header bad_value[] = {H("X-A", "1\r\nX-Evil: 2")};
    sdh_header bad_name[] = {H("X:A", "1")};
    sdh_request_head h = {"GET", 3, "/", 1, bad_value, 1, NULL, 0, SDH_BODY_NONE};
    cr_assert_eq(sdh_request_head_size(&h), 0);
    cr_assert_eq(sdh_request_head_write(NULL, &h), 0);
    h.headers = bad_name;
    cr_assert_eq(sdh_request_head_size(&h), 0);
    sdh_request_head t = {"GET", 3, "/a b", 4, NULL, 0, NULL, 0, SDH_BODY_NONE};
    cr_assert_eq(sdh_request_head_size(&t), 0);
    sdh_request_head e = {"", 0, "/", 1, NULL, 0, NULL, 0, SDH_BODY_NONE};
    cr_assert_eq(sdh_request_head_size(&e), 0);
    sdh_request_head cl = {"GET", 3, "/", 1, NULL, 0, NULL, 0, -7};
    cr_assert_eq(sdh_request_head_size(&cl), 0);
}

/* The scans go eight bytes at a time: a CR, LF, NUL (or a ':' in a name) is found at
 * every position of fields of every length, and bytes that only look alike pass. */
Test(wire, request_head_refuses_injection_at_every_offset)
{
    static const char bad[] = {'\r', '\n', '\0', ':'};
    char name[40], value[40];
    for (size_t len = 1; len <= sizeof(value); len++) {
        for (size_t at = 0; at < len; at++) {
            for (size_t b = 0; b < sizeof(bad); b++) {
                memset(name, 'n', len);
                memset(value, 'v', len);
                sdh_header hs[] = {{name, len, value, len}};
                sdh_request_head h = {"GET", 3, "/", 1, hs, 1, NULL, 0, SDH_BODY_NONE};
                cr_assert_gt(sdh_request_head_size(&h), 0);
                name[at] = bad[b];
                cr_assert_eq(sdh_request_head_size(&h), 0, "name: byte %zu of %zu", at, len);
                name[at] = 'n';
                value[at] = bad[b];
                if (bad[b] == ':') /* a colon is fine in a value */
                    cr_assert_gt(sdh_request_head_size(&h), 0);
                else
                    cr_assert_eq(sdh_request_head_size(&h), 0, "value: byte %zu of %zu", at, len);
            }
        }
    }
    /* Bytes one off the refused ones (0x0c, 0x0e, 0x0b, 0x09, 0x01, 0x3b, 0x8d) pass. */
    char odd[] = "a\x0c\x0e\x0b\tb\x01\x3b\x8d\x8a\x80\xff";
    sdh_header ok[] = {{"X-Odd", 5, odd, sizeof(odd) - 1}};
    sdh_request_head h = {"GET", 3, "/", 1, ok, 1, NULL, 0, SDH_BODY_NONE};
    cr_assert_gt(sdh_request_head_size(&h), 0);
}

Test(wire, response_head)
{
    sdh_header hs[] = {H("x-request-id", "abc")};
    sdh_response_head h = {404, NULL, hs, 1, 5, 1};
    size_t n = sdh_response_head_size(&h);
    char buf[256];
    cr_assert_eq(sdh_response_head_write(buf, &h), n);
    buf[n] = '\0';
    cr_assert_str_eq(buf, "HTTP/1.1 404 Not Found\r\nx-request-id: abc\r\nContent-Length: 5\r\n"
                          "Connection: close\r\n\r\n");
    sdh_response_head bad = {42, NULL, NULL, 0, 0, 0};
    cr_assert_eq(sdh_response_head_size(&bad), 0);
}

Test(wire, chunk_prefix)
{
    char b[SDH_CHUNK_PREFIX_MAX];
    size_t n = sdh_chunk_prefix(b, 1);
    cr_assert_eq(n, 3);
    cr_assert(memcmp(b, "1\r\n", 3) == 0);
    n = sdh_chunk_prefix(b, 0x1f00a);
    cr_assert(n == 7 && memcmp(b, "1f00a\r\n", 7) == 0);
    n = sdh_chunk_prefix(b, SIZE_MAX);
    cr_assert_eq(n, 18);
}

Test(wire, names_and_tokens)
{
    cr_assert(sdh_name_eq("Content-Length", 14, "content-length"));
    cr_assert(!sdh_name_eq("Content-Lengt", 13, "content-length"));
    cr_assert(!sdh_name_eq("Content-Lengths", 15, "content-length"));
    cr_assert(sdh_value_has_token("keep-alive, Close", 17, "close"));
    cr_assert(sdh_value_has_token(" close ", 7, "close"));
    cr_assert(!sdh_value_has_token("closed", 6, "close"));
    cr_assert(!sdh_value_has_token("", 0, "close"));
    cr_assert(sdh_header_is_hop_by_hop("Transfer-Encoding", 17));
    cr_assert(!sdh_header_is_hop_by_hop("Content-Type", 12));
    static const char *const hop[] = {"Connection", "KEEP-ALIVE", "proxy-connection", "TE",
                                      "Trailer",    "upgrade",    "transfer-encoding"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        cr_assert(sdh_header_is_hop_by_hop(hop[i], strlen(hop[i])), "%s", hop[i]);
        cr_assert(!sdh_header_is_hop_by_hop(hop[i], strlen(hop[i]) - 1), "%s", hop[i]);
    }
    cr_assert(!sdh_header_is_hop_by_hop("tf", 2));
    cr_assert(!sdh_header_is_hop_by_hop("trailers", 8));
    cr_assert(!sdh_header_is_hop_by_hop("", 0));
    cr_assert(sdh_name_eq("", 0, ""));
    cr_assert(!sdh_name_eq("a", 1, ""));
    sdh_header hs[] = {H("A", "1"), H("Seldon-Model", "iris")};
    cr_assert_eq(sdh_header_find(hs, 2, "seldon-model"), &hs[1]);
    cr_assert_null(sdh_header_find(hs, 2, "b"));
}

/* The collector against http-parser fed one byte at a time: names and values span
 * many callbacks. */
static int on_field(http_parser *p, const char *at, size_t len)
{
    return sdh_head_buf_field(p->data, at, len);
}
static int on_value(http_parser *p, const char *at, size_t len)
{
    return sdh_head_buf_value(p->data, at, len);
}

Test(wire, head_buf_collects_fragments)
{
    static const char msg[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Empty:\r\n"
                              "X-Long: a b c\r\nContent-Length: 0\r\n\r\n";
    http_parser_settings s = {0};
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    sdh_head_buf hb;
    sdh_head_buf_init(&hb, 4096);
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &hb;
    for (size_t i = 0; i < sizeof(msg) - 1; i++)
        cr_assert_eq(http_parser_execute(&p, &s, msg + i, 1), 1, "byte %zu", i);
    const sdh_header *hs;
    size_t n;
    cr_assert_eq(sdh_head_buf_headers(&hb, &hs, &n), 0);
    cr_assert_eq(n, 4);
    cr_assert(hs[0].name_len == 12 && memcmp(hs[0].name, "Content-Type", 12) == 0);
    cr_assert(hs[0].value_len == 10 && memcmp(hs[0].value, "text/plain", 10) == 0);
    cr_assert(hs[1].name_len == 7 && hs[1].value_len == 0);
    cr_assert(hs[2].value_len == 5 && memcmp(hs[2].value, "a b c", 5) == 0);
    sdh_head_buf_reset(&hb);
    cr_assert_eq(sdh_head_buf_headers(&hb, &hs, &n), 0);
    cr_assert_eq(n, 0);
    sdh_head_buf_free(&hb);
}

Test(wire, head_buf_bound)
{
    sdh_head_buf hb;
    sdh_head_buf_init(&hb, 8);
    cr_assert_eq(sdh_head_buf_field(&hb, "Name", 4), 0);
    cr_assert_eq(sdh_head_buf_value(&hb, "1234", 4), 0);
    cr_assert_eq(sdh_head_buf_field(&hb, "X", 1), -1);
    cr_assert_eq(sdh_head_buf_value(&hb, "v", 1), -1);
    sdh_head_buf_free(&hb);
    /* The header count is bounded as well as the bytes: 1 + 64 / 32 = 3 headers. */
    sdh_head_buf_init(&hb, 64);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sdh_head_buf_field(&hb, "a", 1), 0);
        cr_assert_eq(sdh_head_buf_value(&hb, "", 0), 0);
    }
    cr_assert_eq(sdh_head_buf_field(&hb, "a", 1), -1);
    sdh_head_buf_free(&hb);
}
