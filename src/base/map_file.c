/* Maps whole files read-only. Contract: src/base/map_file.h. */
#include "base/map_file.h"

#include "base/status.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

kiln_status map_file(const char *path, uint64_t min_size, const char *what, const uint8_t **base,
                     uint64_t *size, struct kiln_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return kiln_fail(err, KILN_EIO, "%s: cannot open: %m", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return kiln_fail(err, KILN_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size < min_size) {
        close(fd);
        return kiln_fail(err, KILN_EFORMAT, "%s: file too short for a %s header (%lld bytes)",
                         path, what, (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return kiln_fail(err, KILN_EIO, "%s: cannot map: %m", path);
    *base = map;
    *size = (uint64_t)sb.st_size;
    return KILN_OK;
}

void map_file_release(const uint8_t *base, uint64_t size)
{
    munmap((void *)base, (size_t)size);
}
