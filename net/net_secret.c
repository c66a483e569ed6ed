/* net_secret.c — loading the shared authentication secret from a private file
 * or an environment variable. It refuses anything but a regular file (opened
 * non-blocking, so a FIFO cannot hang the caller; a symbolic link is refused),
 * files that group or others could read or write, and secrets too short to
 * resist guessing. It does not generate or store secrets. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net_util.h"

static int finish(uint8_t *buf, size_t n, size_t *len, const char *what, char err[NET_ERR_LEN])
{
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if (n < 16)
        return net_seterr(err, "%s: the shared secret is %zu bytes; at least 16 are required",
                          what, n);
    *len = n;
    return NET_OK;
}

int net_secret_load(const char *path, const char *env, uint8_t *buf, size_t cap, size_t *len,
                    char err[NET_ERR_LEN])
{
    if (!buf || !len || cap < 16) return net_seterr(err, "net_secret_load: bad arguments");
    if (!path) {
        const char *v = env ? getenv(env) : NULL;
        if (!v) return net_seterr(err, "no secret file given and $%s is not set", env ? env : "?");
        size_t n = strlen(v);
        if (n > cap) return net_seterr(err, "$%s: secret longer than %zu bytes", env, cap);
        memcpy(buf, v, n);
        char what[80];
        snprintf(what, sizeof what, "$%.70s", env);
        return finish(buf, n, len, what, err);
    }
    /* O_NONBLOCK: opening a FIFO without a writer would block forever */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ELOOP)
        return net_seterr(err, "%s: is a symbolic link; name the secret file itself", path);
    if (fd < 0 && errno == ENOENT) return net_seterr(err, "%s: no such file", path);
    if (fd < 0) return net_seterr(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return net_seterr(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        const char *what = S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                         : S_ISSOCK(st.st_mode) ? "a socket" : "a device or special file";
        close(fd);
        return net_seterr(err, "%s: is %s; the secret must be a regular file", path, what);
    }
    if (fcntl(fd, F_SETFL, 0) < 0) { /* a regular file: plain blocking reads */
        close(fd);
        return net_seterr(err, "%s: fcntl: %s", path, strerror(errno));
    }
    if (st.st_mode & 077) {
        close(fd);
        return net_seterr(err, "%s: mode %03o lets others read or write the secret; "
                          "HINT: chmod 600 %s", path, (unsigned)(st.st_mode & 0777), path);
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            close(fd);
            return net_seterr(err, "%s: %s", path, strerror(errno));
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n == cap) {
            char extra;
            if (read(fd, &extra, 1) > 0) {
                close(fd);
                return net_seterr(err, "%s: secret longer than %zu bytes", path, cap);
            }
            break;
        }
    }
    close(fd);
    return finish(buf, n, len, path, err);
}
