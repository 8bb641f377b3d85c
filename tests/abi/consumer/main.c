/* A program outside the tree: decodes one request through the installed library. */
#include <stdio.h>
#include <string.h>

#include <seldon/seldon.h>

int main(void)
{
    static const char body[] =
        "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1.5,2]}]}";
    seldon_msg *msg = NULL;
    seldon_tensor t;
    int rc = seldon_msg_new(&msg, SELDON_MSG_REQUEST);
    if (rc == 0)
        rc = seldon_msg_decode_json(msg, body, strlen(body), 0, 0);
    if (rc == 0)
        rc = seldon_msg_tensor(&t, msg, 0);
    if (rc != 0 || t.count != 2 || ((const float *)t.data)[0] != 1.5f) {
        fprintf(stderr, "consumer: %s (%s)\n", seldon_strerror(rc), seldon_last_error());
        seldon_msg_free(msg);
        return 1;
    }
    printf("consumer: libseldon %s decoded %s[%llu]\n", seldon_version(), t.name,
           (unsigned long long)t.count);
    seldon_msg_free(msg);
    return 0;
}
