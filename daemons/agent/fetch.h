/*
 * Fetching a model's artifact, on a libuv loop, for the daemons that load models
 * (seldon-agent, and seldon-up's in-process agent stage): a local path or file://
 * is copied with `cp`, anything else goes through `rclone copy`, both as child
 * processes of the loop, so that the loop never waits on a copy. Artifacts live in
 * an artifacts folder, one folder per storageUri and artifactVersion, and are
 * fetched once.
 *
 * Thread safety: everything runs on the loop given; callbacks run on it.
 */
#ifndef AG_FETCH_H
#define AG_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Runs argv as a child of loop. cb(arg, ok, err) runs once, after the child exited and
 * its handles closed: ok 1 for exit status 0, else err says why (the end of its stderr),
 * borrowed for the call. A child that cannot start is reported the same way, later.
 * track (may be NULL) holds the running child while it runs, for uv_process_kill(). */
typedef void (*ag_child_cb)(void *arg, int ok, const char *err);
int ag_child_run(uv_loop_t *loop, char **argv, const char *what, uv_process_t **track,
                 ag_child_cb cb, void *arg);

typedef struct ag_fetch_opts {
    uv_loop_t *loop;
    const char *artifacts_dir;
    const char *rclone;        /* the rclone binary */
    const char *rclone_config; /* may be NULL */
} ag_fetch_opts;

/* art: the artifact folder (borrowed for the call), or NULL and why says why not. */
typedef void (*ag_fetch_cb)(void *arg, const char *art, const char *why);

/*
 * Fetches storage_uri (its artifact_version folder when >= 0) into
 * <artifacts_dir>/<hash of the source>, unless that folder is there already. cb runs
 * once: before this returns when nothing had to be copied (or the source was refused),
 * later otherwise; track as for ag_child_run(). One fetch of a source at a time: callers
 * serialise them.
 */
void ag_fetch(const ag_fetch_opts *o, const char *storage_uri, int64_t artifact_version,
              uv_process_t **track, ag_fetch_cb cb, void *arg);

/* Renames the model in dir/model-settings.json to vname, or in each version folder's when
 * dir has none. 0, or -1 with why filled. */
int ag_rename_all_settings(const char *dir, const char *vname, char *why, size_t cap);

/* rm -rf path (it may not exist). */
void ag_rm_tree(const char *path);

#endif
