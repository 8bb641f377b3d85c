/*
 * Where a daemon finds what ships beside it: folders relative to its own
 * binary (from /proc/self/exe), so that a server run from the build tree or
 * from an install prefix finds its runtime plugins without flags.
 *
 * The relative folders are computed at configure time (daemons/server/
 * CMakeLists.txt): SDP_RUNTIMES_BUILD_REL for the build tree (used only when
 * the binary runs from SDP_BUILD_BINARY_DIR, the folder it was built in) and
 * SDP_RUNTIMES_INSTALL_REL for the install layout (bin/ -> lib/seldon/runtimes).
 * A default folder must be owned by root or this user and not world-writable.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef SDP_PATHS_H
#define SDP_PATHS_H

#include <stddef.h>

/* Writes the folder of the running executable into out; 0, or -1 if unknown or too long. */
int sdp_exe_dir(char *out, size_t size);

/*
 * The runtime plugin search path, ':'-separated: the folders of `flag`, then
 * those of `env` (each ':'-separated, either may be NULL), then the default
 * folders relative to the binary that exist. A folder appears once.
 * Returns a string the caller frees with sdd_free, or NULL when out of memory.
 */
char *sdp_runtime_path(const char *flag, const char *env);

#endif
