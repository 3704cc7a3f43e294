/* Read-only memory maps of whole files, for the model readers (GGUF, safetensors).
 * Contract for src/base/map_file.c. Any thread. */
#ifndef KILN_BASE_MAP_FILE_H
#define KILN_BASE_MAP_FILE_H

#include "kiln.h"

#include <stdint.h>

/* Maps the regular file at path. A file shorter than min_size is refused with KILN_EFORMAT
 * ("file too short for a WHAT header"); KILN_EIO when it cannot be opened, is not a regular
 * file or cannot be mapped. Unmap with map_file_release. */
kiln_status map_file(const char *path, uint64_t min_size, const char *what, const uint8_t **base,
                     uint64_t *size, struct kiln_err *err);
void map_file_release(const uint8_t *base, uint64_t size);

#endif
