/*
 * Default folders relative to the running binary.
 *
 * A default folder is a place plugins are dlopen()ed from without anyone
 * asking, so it is trusted only when nobody else could have filled it: the
 * build-tree folder only for the binary that sits in the build folder it was
 * configured for (a copy of the binary elsewhere, e.g. /tmp/x/bin, must not
 * search /tmp/runtimes), and any default folder only when it is owned by root
 * or by this user and not writable by others.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "paths.h"
#include "sdd.h"

#ifndef SDP_RUNTIMES_INSTALL_REL
#define SDP_RUNTIMES_INSTALL_REL "../lib/seldon/runtimes"
#endif

int sdp_exe_dir(char *out, size_t size)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash;
    if (n <= 0)
        return -1;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash == NULL || (size_t)(slash - exe) >= size)
        return -1;
    if (slash == exe)
        slash++; /* the binary sits in "/" */
    memcpy(out, exe, (size_t)(slash - exe));
    out[slash - exe] = '\0';
    return 0;
}

/* Appends dir (n bytes) to the ':'-list in buf unless it is empty or already listed. */
static void add_dir(char *buf, size_t *len, const char *dir, size_t n)
{
    const char *p = buf;
    if (n == 0)
        return;
    while (*p) {
        size_t k = strcspn(p, ":");
        if (k == n && memcmp(p, dir, n) == 0)
            return;
        p += k;
        if (*p == ':')
            p++;
    }
    if (*len)
        buf[(*len)++] = ':';
    memcpy(buf + *len, dir, n);
    *len += n;
    buf[*len] = '\0';
}

static void add_list(char *buf, size_t *len, const char *list)
{
    while (list != NULL && *list) {
        size_t n = strcspn(list, ":");
        add_dir(buf, len, list, n);
        list += n;
        if (*list == ':')
            list++;
    }
}

/* Whether the binary runs from the build folder it was configured for. */
static int in_build_tree(const char *exe_dir)
{
#ifdef SDP_BUILD_BINARY_DIR
    char a[PATH_MAX], b[PATH_MAX];
    return realpath(exe_dir, a) != NULL && realpath(SDP_BUILD_BINARY_DIR, b) != NULL &&
           strcmp(a, b) == 0;
#else
    (void)exe_dir;
    return 0;
#endif
}

static int trusted_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
           (st.st_uid == 0 || st.st_uid == geteuid()) && (st.st_mode & S_IWOTH) == 0;
}

char *sdp_runtime_path(const char *flag, const char *env)
{
    static const char *const rel[] = {
#ifdef SDP_RUNTIMES_BUILD_REL
        SDP_RUNTIMES_BUILD_REL,
#endif
        SDP_RUNTIMES_INSTALL_REL,
    };
    char dir[PATH_MAX], cand[PATH_MAX], real[PATH_MAX];
    int build = 0;
    size_t cap = (flag ? strlen(flag) : 0) + (env ? strlen(env) : 0) +
                 sizeof(rel) / sizeof(rel[0]) * (PATH_MAX + 1) + 2;
    size_t len = 0, i;
    char *buf = sdd_malloc(cap);
    if (buf == NULL)
        return NULL;
    buf[0] = '\0';
    add_list(buf, &len, flag);
    add_list(buf, &len, env);
    if (sdp_exe_dir(dir, sizeof(dir)) == 0) {
        build = in_build_tree(dir);
        for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
#ifdef SDP_RUNTIMES_BUILD_REL
            if (i == 0 && !build)
                continue;
#endif
            if ((size_t)snprintf(cand, sizeof(cand), "%s/%s", dir, rel[i]) >= sizeof(cand) ||
                realpath(cand, real) == NULL || !trusted_dir(real))
                continue;
            add_dir(buf, &len, real, strlen(real));
        }
    }
    return buf;
}
