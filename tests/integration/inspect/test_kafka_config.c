/*
 * The Kafka glue's configuration (daemons/common/kafka.c): where the bootstrap
 * servers come from (--kafka-broker > config file and --kafka-config, in order >
 * SELDON_KAFKA_BROKER > localhost:9092), the role defaults and their overrides,
 * properties librdkafka refuses, and properties files with errors naming the line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"
#include "sdd.h"

static char path[64];

static const char *write_file(const char *text)
{
    int fd;
    snprintf(path, sizeof(path), "/tmp/kafka-config-XXXXXX");
    fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* The value of key in the configuration built for the role (consumer 1/0). */
static char *built(const sdk_config *c, int consumer, const char *key)
{
    static char val[512];
    size_t n = sizeof(val);
    rd_kafka_conf_t *conf = NULL;
    cr_assert_eq(sdk_conf_build(&conf, c, consumer), 0, "%s", seldon_last_error());
    cr_assert_eq(rd_kafka_conf_get(conf, key, val, &n), RD_KAFKA_CONF_OK, "%s", key);
    rd_kafka_conf_destroy(conf);
    return val;
}

Test(kafka_config, broker_precedence)
{
    sdk_config c = SDK_CONFIG_INIT;
    unsetenv("SELDON_KAFKA_BROKER");
    cr_assert_str_eq(built(&c, 1, "bootstrap.servers"), "localhost:9092");
    cr_assert_str_eq(sdk_config_brokers(&c), "localhost:9092");
    setenv("SELDON_KAFKA_BROKER", "env:1", 1);
    cr_assert_str_eq(built(&c, 1, "bootstrap.servers"), "env:1");
    cr_assert_str_eq(sdk_config_brokers(&c), "env:1");
    /* A file's bootstrap.servers wins over the environment, then flags in order. */
    cr_assert_eq(sdk_config_file(&c, write_file("bootstrap.servers=file:2\n")), 0);
    unlink(path);
    cr_assert_str_eq(built(&c, 0, "bootstrap.servers"), "file:2");
    cr_assert_str_eq(sdk_config_brokers(&c), "file:2");
    cr_assert_eq(sdk_flag_property(&c, "bootstrap.servers=flag:3"), 0);
    cr_assert_str_eq(built(&c, 1, "bootstrap.servers"), "flag:3");
    cr_assert_str_eq(sdk_config_brokers(&c), "flag:3");
    /* --kafka-broker wins over everything. */
    cr_assert_eq(sdk_flag_broker(&c, "broker:4,broker:5"), 0);
    cr_assert_str_eq(built(&c, 1, "bootstrap.servers"), "broker:4,broker:5");
    cr_assert_str_eq(sdk_config_brokers(&c), "broker:4,broker:5");
    unsetenv("SELDON_KAFKA_BROKER");
    sdk_config_free(&c);
}

Test(kafka_config, empty_environment_is_not_a_broker)
{
    sdk_config c = SDK_CONFIG_INIT;
    setenv("SELDON_KAFKA_BROKER", "", 1);
    cr_assert_str_eq(built(&c, 1, "bootstrap.servers"), "localhost:9092");
    cr_assert_str_eq(sdk_config_brokers(&c), "localhost:9092");
    unsetenv("SELDON_KAFKA_BROKER");
}

Test(kafka_config, role_defaults_and_overrides)
{
    sdk_config c = SDK_CONFIG_INIT;
    cr_assert_str_eq(built(&c, 1, "enable.auto.commit"), "false");
    cr_assert_str_eq(built(&c, 1, "enable.auto.offset.store"), "false");
    /* librdkafka reads "earliest" and "latest" back as their old names */
    cr_assert_str_eq(built(&c, 1, "auto.offset.reset"), "smallest");
    cr_assert_str_eq(built(&c, 0, "enable.idempotence"), "true");
    cr_assert_str_eq(built(&c, 0, "linger.ms"), "0");
    /* Properties given by the user win over the defaults; later ones over earlier. */
    cr_assert_eq(sdk_flag_property(&c, "auto.offset.reset = latest"), 0);
    cr_assert_eq(sdk_flag_property(&c, "linger.ms=5"), 0);
    cr_assert_eq(sdk_flag_property(&c, "linger.ms=7"), 0);
    cr_assert_str_eq(built(&c, 1, "auto.offset.reset"), "largest");
    cr_assert_str_eq(built(&c, 0, "linger.ms"), "7");
    sdk_config_free(&c);
}

Test(kafka_config, refused_property_is_named)
{
    sdk_config c = SDK_CONFIG_INIT;
    rd_kafka_conf_t *conf = NULL;
    cr_assert_eq(sdk_flag_property(&c, "no.such.property=1"), 0);
    cr_assert_eq(sdk_conf_build(&conf, &c, 1), SELDON_EINVAL);
    cr_assert_null(conf);
    cr_assert(strstr(seldon_last_error(), "no.such.property") != NULL, "%s", seldon_last_error());
    sdk_config_free(&c);
    /* A known property with a bad value: named too. */
    cr_assert_eq(sdk_flag_property(&c, "linger.ms=soon"), 0);
    cr_assert_eq(sdk_conf_build(&conf, &c, 0), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "linger.ms") != NULL, "%s", seldon_last_error());
    sdk_config_free(&c);
}

Test(kafka_config, flag_values)
{
    sdk_config c = SDK_CONFIG_INIT;
    const char *part = NULL;
    cr_assert_eq(sdk_flag_property(&c, "no-equals-sign"), -1);
    cr_assert_eq(sdk_flag_property(&c, "=value"), -1);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(sdk_flag_broker(&c, ""), -1);
    cr_assert_eq(sdk_flag_broker(&c, "a:1 b:2"), -1);
    cr_assert_null(c.broker);
    cr_assert_eq(sdk_flag_topic_part(&part, "bad/part"), -1);
    cr_assert_eq(sdk_flag_topic_part(&part, ""), -1);
    cr_assert_null(part);
    cr_assert_eq(sdk_flag_topic_part(&part, "my-prefix.v1_2"), 0);
    cr_assert_str_eq(part, "my-prefix.v1_2");
    sdk_config_free(&c);
}

Test(kafka_config, file_lines_comments_and_spaces)
{
    sdk_config c = SDK_CONFIG_INIT;
    const char *p = write_file("# comment\n! another\n\n  client.id =  with spaces  \r\n"
                               "\tsasl.username=u=v\n");
    cr_assert_eq(sdk_config_file(&c, p), 0, "%s", seldon_last_error());
    unlink(p);
    cr_assert_eq(c.n, 4);
    cr_assert_str_eq(c.props[0], "client.id");
    cr_assert_str_eq(c.props[1], "with spaces");
    cr_assert_str_eq(c.props[2], "sasl.username");
    cr_assert_str_eq(c.props[3], "u=v"); /* the first '=' splits */
    sdk_config_free(&c);
}

Test(kafka_config, file_errors_name_the_line)
{
    sdk_config c = SDK_CONFIG_INIT;
    char want[128];
    const char *p = write_file("client.id=a\n# fine\nnot a property\nlinger.ms=1\n");
    cr_assert_eq(sdk_config_file(&c, p), SELDON_EPARSE);
    snprintf(want, sizeof(want), "%s:3: expected KEY=VALUE", p);
    cr_assert(strstr(seldon_last_error(), want) != NULL, "%s", seldon_last_error());
    unlink(p);
    sdk_config_free(&c);
    p = write_file("\n = value\n");
    cr_assert_eq(sdk_config_file(&c, p), SELDON_EPARSE);
    snprintf(want, sizeof(want), "%s:2: empty property name", p);
    cr_assert(strstr(seldon_last_error(), want) != NULL, "%s", seldon_last_error());
    unlink(p);
    sdk_config_free(&c);
    cr_assert_eq(sdk_config_file(&c, "/nonexistent/kafka.properties"), SELDON_EIO);
    cr_assert(strstr(seldon_last_error(), "/nonexistent/kafka.properties") != NULL);
    cr_assert_eq(c.n, 0);
}
