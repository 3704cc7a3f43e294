/* The model cache: a Hugging Face repo id ("org/name", or "org/name:QUANT" / "org/name:FILE.gguf"
 * for one GGUF file of a repo that has several) resolved to a local path under the cache
 * directory ($KILN_CACHE_DIR, default ~/.cache/kiln/models), downloaded with libcurl from the
 * Hub's file API when missing ($HF_ENDPOINT, token $HF_TOKEN): resumed after a dropped
 * connection, every file checked against the Hub's sha256 (LFS) or git blob id, nothing
 * moved into the cache until it checks out. KILN_OFFLINE=1 never touches the network.
 * Contract for src/hub/hub.c. Any thread (one download of a repo at a time). */
#ifndef KILN_HUB_H
#define KILN_HUB_H

#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>

/* True when spec has the shape of a repo id and is not an existing local path. */
bool hub_is_repo_id(const char *spec);

/* Writes the local path for spec into path: spec itself when it exists locally, else the
 * cached (or just downloaded) directory or GGUF file. Fails with KILN_EINVAL (not a path
 * and not a repo id), KILN_EIO (network or HTTP failure, not cached while offline),
 * KILN_EFORMAT (a checksum or size mismatch, a bad listing), KILN_ENOMEM, naming the repo
 * and file. */
kiln_status hub_resolve(const char *spec, char *path, size_t cap, struct kiln_err *err);

#endif
