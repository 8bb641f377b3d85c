/*
 * seldon model infer / metadata: through the router (or any OIP endpoint) on
 * the inference host, over REST or gRPC. For gRPC the JSON request is turned
 * into a ModelInferRequest by libseldon's OIP codec, and the answer back into
 * JSON the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "grpc_predict_v2.pb-c.h"
#include "rpc.h"
#include "sdd.h"
#include "seldon/oip.h"

/*
 * One attempt; the response JSON (REST body, or the decoded gRPC answer) in
 * out->body. route: the seldon-model header ("<model>", or "<p>.pipeline").
 */
static int infer_once(cli *c, cli_result *out, const char *model, const char *route,
                      const char *json, const seldon_buf *pb)
{
    if (strcmp(c->o.mode, "grpc") == 0) {
        sd2_header h[CLI_HEADERS_MAX + 1];
        size_t n = 0, i;
        seldon_msg *resp = NULL;
        seldon_buf js = SELDON_BUF_INIT;
        int rc;
        uint64_t timeout = c->o.timeout_s > 0 ? (uint64_t)c->o.timeout_s * 1000 : 60000;
        h[n++] = (sd2_header){"seldon-model", 12, route, strlen(route)};
        for (i = 0; i < c->o.nheaders; i++) {
            const char *eq = strchr(c->o.headers[i], '=');
            h[n++] = (sd2_header){c->o.headers[i], (size_t)(eq - c->o.headers[i]), eq + 1,
                                  strlen(eq + 1)};
        }
        rc = cli_grpc(c, out, c->o.infer_host, "/inference.GRPCInferenceService/ModelInfer",
                      pb->data, pb->len, h, n, timeout);
        if (rc != 0)
            return rc;
        /* The answer as JSON, like the REST one. */
        rc = seldon_msg_new(&resp, SELDON_MSG_RESPONSE);
        if (rc == 0)
            rc = seldon_msg_decode_pb(resp, out->body.data, out->body.len, 0);
        if (rc == 0)
            rc = seldon_msg_encode_json(&js, NULL, resp, 0);
        if (rc != 0) {
            out->status = SDR_INTERNAL;
            snprintf(out->message, sizeof(out->message), "the answer: %s", seldon_last_error());
        } else {
            seldon_buf_free(&out->body);
            out->body = js; /* a response's JSON names its model, as REST's does */
            js = (seldon_buf)SELDON_BUF_INIT;
            if (seldon_buf_reserve(&out->body, 1) == 0)
                out->body.data[out->body.len] = '\0';
        }
        seldon_buf_free(&js);
        seldon_msg_free(resp);
        return out->status == 0 ? 0 : -1;
    } else {
        char target[600];
        snprintf(target, sizeof(target), "/v2/models/%s/infer", model);
        return cli_rest(c, out, "POST", target, json, strlen(json), route);
    }
}

typedef struct route_count {
    char route[256];
    long n;
} route_count;

int cli_infer(cli *c, const char *model, const char *json, int pipeline)
{
    char route[400];
    seldon_buf pb = SELDON_BUF_INIT;
    seldon_msg *req = NULL;
    cli_result r;
    route_count routes[64];
    size_t nroutes = 0, i;
    long it, failures = 0;
    char last_error[2048] = "";
    char sticky[300];
    int rc = 0, stuck = 0;

    /* A pipeline is asked for through the models' endpoint, as Seldon's CLI does. */
    snprintf(route, sizeof(route), "%s%s", model, pipeline ? ".pipeline" : "");
    if (strcmp(c->o.mode, "grpc") == 0) {
        rc = seldon_msg_new(&req, SELDON_MSG_REQUEST);
        if (rc == 0)
            rc = seldon_msg_decode_json(req, json, strlen(json), 0, 0);
        if (rc == 0)
            rc = seldon_msg_set_model(req, model, strlen(model), NULL, 0);
        if (rc == 0)
            rc = seldon_msg_encode_pb(&pb, req, 0);
        seldon_msg_free(req);
        if (rc != 0) {
            fprintf(stderr, "seldon: the request: %s\n", seldon_last_error());
            seldon_buf_free(&pb);
            return 1;
        }
    }
    if (c->o.iterations <= 1) {
        rc = infer_once(c, &r, model, route, json, &pb);
        if (c->o.show_headers && r.headers.len > 0)
            fprintf(stderr, "%s", (const char *)r.headers.data);
        if (rc == 0) {
            fwrite(r.body.data, 1, r.body.len, stdout);
            fputc('\n', stdout);
        } else {
            fprintf(stderr, "seldon: infer %s: %s%s%s\n", model,
                    strcmp(c->o.mode, "grpc") == 0 ? cli_status_name(r.status) : "",
                    strcmp(c->o.mode, "grpc") == 0 ? ": " : "", r.message);
        }
        cli_result_free(&r);
        seldon_buf_free(&pb);
        return rc == 0 ? 0 : 1;
    }
    for (it = 0; it < c->o.iterations; it++) {
        rc = infer_once(c, &r, model, route, json, &pb);
        if (rc == 0 && c->o.sticky && !stuck && r.route[0] != '\0' &&
            c->o.nheaders < CLI_HEADERS_MAX) {
            /* Pinned to the route that answered first, as Seldon's -s does. */
            snprintf(sticky, sizeof(sticky), "x-seldon-route=%s", r.route);
            c->o.headers[c->o.nheaders++] = sticky;
            stuck = 1;
        }
        if (rc != 0) {
            failures++;
            snprintf(last_error, sizeof(last_error), "%s", r.message);
        } else {
            for (i = 0; i < nroutes && strcmp(routes[i].route, r.route) != 0; i++)
                ;
            if (i == nroutes && nroutes < sizeof(routes) / sizeof(routes[0])) {
                snprintf(routes[nroutes].route, sizeof(routes[nroutes].route), "%s", r.route);
                routes[nroutes++].n = 0;
            }
            if (i < nroutes)
                routes[i].n++;
        }
        cli_result_free(&r);
    }
    seldon_buf_free(&pb);
    printf("{\"iterations\":%ld,\"success\":%ld,\"failures\":%ld,\"routes\":{", c->o.iterations,
           c->o.iterations - failures, failures);
    for (i = 0; i < nroutes; i++) {
        if (i > 0)
            fputc(',', stdout);
        json_str(stdout, routes[i].route);
        printf(":%ld", routes[i].n);
    }
    printf("}}\n");
    if (failures > 0) {
        fprintf(stderr, "seldon: infer %s: %ld of %ld failed; last: %s\n", model, failures,
                c->o.iterations, last_error);
        return 1;
    }
    return 0;
}

static void print_tensors(const char *key, Inference__ModelMetadataResponse__TensorMetadata **t,
                          size_t n)
{
    size_t i, j;
    printf("%s[", key);
    for (i = 0; i < n; i++) {
        printf("%s{\"name\":", i ? "," : "");
        json_str(stdout, t[i]->name);
        printf(",\"datatype\":");
        json_str(stdout, t[i]->datatype);
        printf(",\"shape\":[");
        for (j = 0; j < t[i]->n_shape; j++)
            printf("%s%lld", j ? "," : "", (long long)t[i]->shape[j]);
        printf("]}");
    }
    printf("]");
}

int cli_metadata(cli *c, const char *model)
{
    cli_result r;
    char target[600];
    int rc;
    if (strcmp(c->o.mode, "grpc") == 0) {
        Inference__ModelMetadataRequest req = INFERENCE__MODEL_METADATA_REQUEST__INIT;
        Inference__ModelMetadataResponse *resp = NULL;
        sd2_header h = {"seldon-model", 12, model, strlen(model)};
        size_t n;
        uint8_t *buf;
        req.name = (char *)model;
        n = inference__model_metadata_request__get_packed_size(&req);
        buf = sdd_malloc(n + 1);
        if (buf == NULL)
            return 1;
        inference__model_metadata_request__pack(&req, buf);
        rc = cli_grpc(c, &r, c->o.infer_host, "/inference.GRPCInferenceService/ModelMetadata", buf,
                      n, &h, 1, 60000);
        sdd_free(buf);
        if (rc == 0)
            resp = inference__model_metadata_response__unpack(NULL, r.body.len, r.body.data);
        if (rc == 0 && resp == NULL) {
            rc = -1;
            snprintf(r.message, sizeof(r.message), "the answer is not a ModelMetadataResponse");
        }
        if (resp != NULL) {
            printf("{\"name\":");
            json_str(stdout, resp->name);
            printf(",\"versions\":[");
            for (n = 0; n < resp->n_versions; n++) {
                if (n)
                    fputc(',', stdout);
                json_str(stdout, resp->versions[n]);
            }
            printf("],\"platform\":");
            json_str(stdout, resp->platform);
            print_tensors(",\"inputs\":", resp->inputs, resp->n_inputs);
            print_tensors(",\"outputs\":", resp->outputs, resp->n_outputs);
            printf("}\n");
            inference__model_metadata_response__free_unpacked(resp, NULL);
        }
    } else {
        snprintf(target, sizeof(target), "/v2/models/%s", model);
        rc = cli_rest(c, &r, "GET", target, NULL, 0, model);
        if (rc == 0) {
            fwrite(r.body.data, 1, r.body.len, stdout);
            fputc('\n', stdout);
        }
    }
    if (c->o.show_headers && r.headers.len > 0)
        fprintf(stderr, "%s", (const char *)r.headers.data);
    if (rc != 0)
        fprintf(stderr, "seldon: metadata %s: %s\n", model, r.message);
    cli_result_free(&r);
    return rc == 0 ? 0 : 1;
}
