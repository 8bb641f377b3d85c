/*
 * What a model folder may name: runtime plugins by file name from the
 * runtime path only (refused before any dlopen), and a parameters.uri that
 * stays inside the folder once symlinks are resolved.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seldon/repository.h"

#define CHECK_ERR(expr, code, needle)                                                              \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        cr_assert_eq(rc_, (code), "%s gave %s: %s", #expr, seldon_error_name(rc_),                 \
                     seldon_last_error());                                                         \
        cr_assert(strstr(seldon_last_error(), (needle)) != NULL, "'%s' lacks '%s'",              \
                  seldon_last_error(), (needle));                                                  \
    } while (0)

static char root[256];

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void write_model(const char *name, const char *json)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", root, name);
    write_file(dir, "model-settings.json", json);
}

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/seldon-confine-test-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

static seldon_repo *new_repo(const char *runtime_path)
{
    seldon_repo_options o = SELDON_REPO_OPTIONS_INIT;
    seldon_repo *r = NULL;
    o.root = root;
    o.runtime_path = runtime_path;
    cr_assert_eq(seldon_repo_new(&r, &o), 0, "%s", seldon_last_error());
    return r;
}

TestSuite(confinement, .init = setup, .fini = teardown);

Test(confinement, plugin_paths_are_refused_before_opening)
{
    static const char *const impls[] = {
        "/tmp/x/evil.so", "./evil.so", "../evil.so", "a/evil.so", "..so", "evil..so",
        "/usr/lib/libc.so.6",
    };
    char json[512], name[32], dir[512];
    seldon_repo *r;
    size_t i;
    /* The folder holds a file by the name: it must not matter. */
    snprintf(dir, sizeof(dir), "%s/m0", root);
    mkdir(dir, 0755);
    write_file(dir, "evil.so", "not an ELF file");
    r = new_repo(root);
    for (i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        snprintf(name, sizeof(name), "m%zu", i);
        snprintf(json, sizeof(json), "{\"implementation\": \"%s\"}", impls[i]);
        write_model(name, json);
        CHECK_ERR(seldon_repo_load(r, name), SELDON_EINVAL, "a path is refused");
        cr_assert(strstr(seldon_last_error(), impls[i]) != NULL, "%s", seldon_last_error());
    }
    seldon_repo_free(r);
}

Test(confinement, plain_names_come_from_the_runtime_path_only)
{
    char dir[512];
    seldon_repo *r;
    /* evil.so sits in the model folder but not in the runtime path: not found. */
    write_model("m", "{\"implementation\": \"evil.so\"}");
    snprintf(dir, sizeof(dir), "%s/m", root);
    write_file(dir, "evil.so", "not an ELF file");
    snprintf(dir, sizeof(dir), "%s/runtimes", root);
    mkdir(dir, 0755);
    r = new_repo(dir);
    CHECK_ERR(seldon_repo_load(r, "m"), SELDON_ENOTFOUND, "not found in the runtime path");
    /* The same file in the runtime path is found and opened (and fails as a non-ELF). */
    write_file(dir, "evil.so", "not an ELF file");
    CHECK_ERR(seldon_repo_load(r, "m"), SELDON_ENOTFOUND, "cannot open");
    /* A plain identifier stands for libseldon-runtime-<name>.so there. */
    write_model("n", "{\"implementation\": \"custom\"}");
    CHECK_ERR(seldon_repo_load(r, "n"), SELDON_ENOTFOUND, "is not available");
    write_file(dir, "libseldon-runtime-custom.so", "junk");
    CHECK_ERR(seldon_repo_load(r, "n"), SELDON_ENOTFOUND, "libseldon-runtime-custom.so");
    seldon_repo_free(r);
}

Test(confinement, uri_stays_inside_the_model_folder)
{
    char dir[1024], link[1024], target[512];
    seldon_repo *r = new_repo(NULL);
    write_file(root, "secret.json", "{}");
    write_model("up", "{\"implementation\": \"builtin.identity\", \"parameters\": "
                      "{\"uri\": \"../secret.json\"}}");
    CHECK_ERR(seldon_repo_load(r, "up"), SELDON_EINVAL, "parameters.uri '../secret.json'");
    write_model("hidden-up", "{\"implementation\": \"builtin.identity\", \"parameters\": "
                             "{\"uri\": \"./a/../../secret.json\"}}");
    CHECK_ERR(seldon_repo_load(r, "hidden-up"), SELDON_EINVAL, "'..' is refused");

    snprintf(target, sizeof(target), "%s/secret.json", root);
    snprintf(dir, sizeof(dir), "{\"implementation\": \"builtin.identity\", \"parameters\": "
                               "{\"uri\": \"file://%s\"}}", target);
    write_model("abs", dir);
    CHECK_ERR(seldon_repo_load(r, "abs"), SELDON_EINVAL, "outside the model folder");
    /* Absent files are judged as written: an absolute path elsewhere is refused too. */
    write_model("abs-missing", "{\"implementation\": \"builtin.identity\", \"parameters\": "
                               "{\"uri\": \"/nonexistent/model.json\"}}");
    CHECK_ERR(seldon_repo_load(r, "abs-missing"), SELDON_EINVAL, "outside the model folder");

    write_model("link", "{\"implementation\": \"builtin.identity\", \"parameters\": "
                        "{\"uri\": \"./model.json\"}}");
    snprintf(link, sizeof(link), "%s/link/model.json", root);
    cr_assert_eq(symlink(target, link), 0);
    CHECK_ERR(seldon_repo_load(r, "link"), SELDON_EINVAL, "resolves to");

    /* Inside: relative, absolute into the folder, and missing files the runtime reports. */
    write_model("ok", "{\"implementation\": \"builtin.identity\", \"parameters\": "
                      "{\"uri\": \"./data.json\"}}");
    snprintf(dir, sizeof(dir), "%s/ok", root);
    write_file(dir, "data.json", "{}");
    cr_assert_eq(seldon_repo_load(r, "ok"), 0, "%s", seldon_last_error());
    snprintf(link, sizeof(link), "{\"implementation\": \"builtin.identity\", \"parameters\": "
                                 "{\"uri\": \"%s/ok2/x.json\"}}", root);
    write_model("ok2", link);
    cr_assert_eq(seldon_repo_load(r, "ok2"), 0, "%s", seldon_last_error());
    seldon_repo_free(r);
}
