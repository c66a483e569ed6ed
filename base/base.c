/* base.c — the out-of-line parts of base.h: the out-of-memory exit, the
 * monotonic clock and durable writes. */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

void base_oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "pipetrain: out of memory allocating %zu bytes at %s:%d\n"
                    "HINT: use a smaller model, batch or seq_len\n", n, file, line);
    exit(1);
}

double base_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int base_write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int base_durable_begin(const char *path, char **tmp, char *err)
{
    size_t len = strlen(path);
    *tmp = xmalloc(len + 5);
    memcpy(*tmp, path, len);
    memcpy(*tmp + len, ".tmp", 5);
    int fd = open(*tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        seterr(err, "%s: cannot create temporary file %s: %s", path, *tmp, strerror(errno));
        free(*tmp);
        *tmp = NULL;
    }
    return fd;
}

void base_durable_abort(int fd, char *tmp)
{
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);
    free(tmp);
}

int base_fsync_parent_dir(const char *path, char *err)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 1;
    char *dir = xmalloc(n + 1);
    if (slash) memcpy(dir, path, n);
    else dir[0] = '.';
    dir[n] = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0 || fsync(fd) != 0)
        rc = seterr(err, "%s: cannot fsync directory %s: %s", path, dir, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return rc;
}

int base_durable_commit(int fd, char *tmp, const char *path, char *err)
{
    if (fsync(fd) != 0) {
        seterr(err, "%s: fsync of %s failed: %s", path, tmp, strerror(errno));
        base_durable_abort(fd, tmp);
        return -1;
    }
    if (close(fd) != 0) {
        seterr(err, "%s: close of %s failed: %s", path, tmp, strerror(errno));
        base_durable_abort(-1, tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        seterr(err, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        base_durable_abort(-1, tmp);
        return -1;
    }
    free(tmp);
    return base_fsync_parent_dir(path, err);
}

int base_write_durable(const char *path, const void *buf, size_t n, char *err)
{
    char *tmp = NULL;
    int fd = base_durable_begin(path, &tmp, err);
    if (fd < 0) return -1;
    if (base_write_all(fd, buf, n) != 0) {
        seterr(err, "%s: write to %s failed: %s", path, tmp, strerror(errno));
        base_durable_abort(fd, tmp);
        return -1;
    }
    return base_durable_commit(fd, tmp, path, err);
}

void base_hex(char *out, const void *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = bytes;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
}
