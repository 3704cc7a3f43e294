/* Resolves Hugging Face repo ids to files in the model cache, downloading them from the Hub's
 * file API (listing: /api/models/REPO/revision/main?blobs=true; files: /REPO/resolve/main/PATH)
 * with libcurl, resuming partial downloads and verifying each file's checksum with OpenSSL.
 * Contract: src/hub/hub.h. */
#define _GNU_SOURCE
#include "hub/hub.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/status.h"

#include <ctype.h>
#include <dirent.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ATTEMPTS 4 /* per file: the first try and resumes after dropped connections */
#define MARKER ".kiln-complete"

struct sibling {
    const char *path;   /* inside the listing JSON */
    uint64_t size;
    const char *sha256; /* LFS files */
    const char *blob;   /* git blob sha1: the others */
};

struct hub {
    const char *repo;
    char endpoint[512];
    char root[4096];     /* the cache directory */
    char repo_dir[4608]; /* root/org/name */
    const char *token;
    struct kiln_err *err;
};

/* ---- paths ---------------------------------------------------------------------------- */

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 96 || !isalnum((unsigned char)s[0])) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return false;
    return !(n >= 2 && strstr(s, "..") && (size_t)(strstr(s, "..") - s) < n);
}

bool hub_is_repo_id(const char *spec)
{
    struct stat sb;
    if (!spec || stat(spec, &sb) == 0) return false;
    const char *slash = strchr(spec, '/');
    if (!slash) return false;
    const char *colon = strchr(slash, ':');
    size_t name_len = colon ? (size_t)(colon - slash - 1) : strlen(slash + 1);
    return name_ok(spec, (size_t)(slash - spec)) && name_ok(slash + 1, name_len) &&
           !strchr(slash + 1, '/') && (!colon || colon[1]);
}

/* A file path from the listing that is safe to create under the repo directory. */
static bool relpath_ok(const char *p)
{
    if (!p[0] || p[0] == '/' || strchr(p, '\\') || strlen(p) > 1024) return false;
    for (const char *s = p; *s; s++)
        if ((unsigned char)*s < 0x20) return false;
    for (const char *seg = p; seg;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        seg = end ? end + 1 : NULL;
    }
    return true;
}

/* Creates every directory above path. */
static bool make_parents(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return false;
        *p = '/';
    }
    return true;
}

/* Removes dir and the directories under it, as long as they hold no files (a partial
 * download left for a later resume keeps its directory). */
static bool remove_empty_dirs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    bool empty = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[8192];
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(sub, &sb) != 0 || !S_ISDIR(sb.st_mode) || !remove_empty_dirs(sub)) empty = false;
    }
    closedir(d);
    return empty && rmdir(dir) == 0;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void cache_root(char *out, size_t cap)
{
    const char *d = getenv("KILN_CACHE_DIR"), *home = getenv("HOME");
    if (d && d[0]) snprintf(out, cap, "%s", d);
    else snprintf(out, cap, "%s/.cache/kiln/models", home && home[0] ? home : ".");
}

/* ---- HTTP ----------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static CURL *new_handle(const struct hub *h, struct curl_slist **headers)
{
    pthread_once(&curl_once, curl_init);
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    *headers = NULL;
    if (h->token && h->token[0]) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", h->token);
        *headers = curl_slist_append(*headers, auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln/0.1");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* stalled for a minute: give up */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    return c;
}

static size_t to_buf(char *p, size_t size, size_t n, void *user)
{
    return buf_append(user, p, size * n) ? size * n : 0;
}

static kiln_status http_status_error(const struct hub *h, long code, const char *what)
{
    return kiln_fail(h->err, KILN_EIO, "%s: HTTP %ld for %s%s", h->repo, code, what,
                     code == 401 || code == 403 ? " (a gated or private repo needs HF_TOKEN)"
                     : code == 404              ? " (no such repo or file)"
                                                : "");
}

/* The repo's file listing with sizes and checksums. */
static kiln_status list_files(struct hub *h, json_t **out)
{
    char url[2048];
    snprintf(url, sizeof url, "%s/api/models/%s/revision/main?blobs=true", h->endpoint, h->repo);
    struct curl_slist *headers;
    CURL *c = new_handle(h, &headers);
    if (!c) return kiln_fail(h->err, KILN_ENOMEM, "cannot start libcurl");
    struct buf body = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_buf);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(headers);
    kiln_status st = KILN_OK;
    if (rc != CURLE_OK)
        st = kiln_fail(h->err, KILN_EIO, "%s: cannot list the repo at %s: %s", h->repo,
                       h->endpoint, curl_easy_strerror(rc));
    else if (code != 200)
        st = http_status_error(h, code, url);
    json_error_t jerr;
    json_t *j = st == KILN_OK ? json_loadb(body.p ? body.p : "", body.len, 0, &jerr) : NULL;
    if (st == KILN_OK && (!j || !json_is_array(json_object_get(j, "siblings"))))
        st = kiln_fail(h->err, KILN_EFORMAT, "%s: the Hub's listing has no 'siblings' array",
                       h->repo);
    buf_free(&body);
    if (st != KILN_OK) {
        json_decref(j);
        return st;
    }
    *out = j;
    return KILN_OK;
}

/* ---- one file ------------------------------------------------------------------------- */

struct transfer {
    FILE *f;
    const char *label;
    uint64_t offset, total; /* bytes already on disk, and the whole file */
    CURL *c;
    bool checked, failed;
    double last_draw;
};

static size_t to_file(char *p, size_t size, size_t n, void *user)
{
    struct transfer *t = user;
    if (!t->checked) {
        long code = 0;
        curl_easy_getinfo(t->c, CURLINFO_RESPONSE_CODE, &code);
        t->checked = true;
        if (code == 200 && t->offset > 0) { /* the server ignored the range: start over */
            if (fflush(t->f) != 0 || ftruncate(fileno(t->f), 0) != 0 || fseek(t->f, 0, SEEK_SET)) {
                t->failed = true;
                return 0;
            }
            t->offset = 0;
        }
    }
    return fwrite(p, size, n, t->f) == n ? size * n : 0;
}

static int progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    (void)dltotal, (void)ultotal, (void)ulnow;
    struct transfer *t = user;
    double now = clock_seconds();
    uint64_t done = t->offset + (uint64_t)dlnow;
    if (now - t->last_draw < 0.2 && done < t->total) return 0;
    t->last_draw = now;
    fprintf(stderr, "\r%-48.48s %8.1f / %.1f MB %3d%%", t->label, (double)done / 1e6,
            (double)t->total / 1e6, t->total ? (int)(100.0 * (double)done / (double)t->total) : 100);
    return 0;
}

/* Hex digest of the file: sha256 of its bytes, or git's blob sha1 ("blob SIZE\0" + bytes). */
static bool file_digest(const char *path, bool git_blob, uint64_t size, char *hex)
{
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = f && ctx && EVP_DigestInit_ex(ctx, git_blob ? EVP_sha1() : EVP_sha256(), NULL);
    if (ok && git_blob) {
        char head[64];
        int n = snprintf(head, sizeof head, "blob %llu", (unsigned long long)size);
        ok = EVP_DigestUpdate(ctx, head, (size_t)n + 1); /* with its NUL */
    }
    static __thread unsigned char chunk[1 << 16];
    size_t n;
    while (ok && f && (n = fread(chunk, 1, sizeof chunk, f)) > 0) ok = EVP_DigestUpdate(ctx, chunk, n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    ok = ok && f && !ferror(f) && EVP_DigestFinal_ex(ctx, md, &len);
    for (unsigned i = 0; ok && i < len; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    if (f) fclose(f);
    EVP_MD_CTX_free(ctx);
    return ok;
}

static kiln_status verify(const struct hub *h, const struct sibling *s, const char *part)
{
    struct stat sb;
    if (stat(part, &sb) != 0)
        return kiln_fail(h->err, KILN_EIO, "%s: cannot read %s: %m", h->repo, part);
    if ((uint64_t)sb.st_size != s->size)
        return kiln_fail(h->err, KILN_EFORMAT, "%s: %s is %lld bytes, the Hub lists %llu",
                         h->repo, s->path, (long long)sb.st_size, (unsigned long long)s->size);
    char hex[2 * EVP_MAX_MD_SIZE + 1] = {0};
    const char *want = s->sha256 ? s->sha256 : s->blob;
    if (!file_digest(part, !s->sha256, s->size, hex))
        return kiln_fail(h->err, KILN_EIO, "%s: cannot read %s back to check it", h->repo, part);
    if (strcasecmp(hex, want) != 0)
        return kiln_fail(h->err, KILN_EFORMAT, "%s: %s has %s %s, the Hub lists %s (download "
                         "discarded)", h->repo, s->path, s->sha256 ? "sha256" : "git blob id",
                         hex, want);
    return KILN_OK;
}

/* Downloads one file to repo_dir/.incomplete/PATH, resuming what a previous attempt left,
 * verifies it and moves it to repo_dir/PATH. A file that fails its check is deleted. */
static kiln_status fetch_file(struct hub *h, const struct sibling *s)
{
    char dest[8192], part[8192], url[4096];
    snprintf(dest, sizeof dest, "%s/%s", h->repo_dir, s->path);
    snprintf(part, sizeof part, "%s/.incomplete/%s.part", h->repo_dir, s->path);
    if (!make_parents(dest) || !make_parents(part))
        return kiln_fail(h->err, KILN_EIO, "%s: cannot create directories for %s: %m", h->repo,
                         dest);
    char *escaped = NULL;
    {
        struct buf b = {0};
        for (const char *seg = s->path; seg;) {
            const char *end = strchr(seg, '/');
            int n = end ? (int)(end - seg) : (int)strlen(seg);
            char *e = curl_easy_escape(NULL, seg, n);
            if (!e || !buf_printf(&b, "%s%s", seg == s->path ? "" : "/", e)) {
                curl_free(e);
                buf_free(&b);
                return kiln_fail(h->err, KILN_ENOMEM, "out of memory");
            }
            curl_free(e);
            seg = end ? end + 1 : NULL;
        }
        escaped = b.p;
    }
    snprintf(url, sizeof url, "%s/%s/resolve/main/%s", h->endpoint, h->repo, escaped);
    free(escaped);
    bool tty = isatty(2);
    kiln_status st = KILN_EIO;
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        FILE *f = fopen(part, "ab");
        if (!f) return kiln_fail(h->err, KILN_EIO, "%s: cannot write %s: %m", h->repo, part);
        struct stat sb;
        uint64_t have = fstat(fileno(f), &sb) == 0 ? (uint64_t)sb.st_size : 0;
        if (have > s->size) { /* not this file: start over */
            if (ftruncate(fileno(f), 0) != 0) have = s->size + 1;
            else have = 0;
        }
        if (have == s->size) {
            fclose(f);
            st = KILN_OK;
            break;
        }
        if (have > 0) log_info("%s: resuming %s at byte %llu", h->repo, s->path, (unsigned long long)have);
        struct curl_slist *headers;
        CURL *c = new_handle(h, &headers);
        if (!c) {
            fclose(f);
            return kiln_fail(h->err, KILN_ENOMEM, "cannot start libcurl");
        }
        char label[256];
        snprintf(label, sizeof label, "%s/%s", h->repo, s->path);
        struct transfer t = {f, label, have, s->size, c, false, false, 0};
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_file);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
        curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
        if (have > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
        if (tty) {
            curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
            curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
        }
        CURLcode rc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(c);
        curl_slist_free_all(headers);
        bool closed = fclose(f) == 0;
        if (tty) fputc('\n', stderr);
        if (rc == CURLE_OK && closed && !t.failed) {
            st = KILN_OK;
            break;
        }
        if (code == 416) { /* our partial file does not fit the server's: start over */
            unlink(part);
        } else if (code >= 400 && code < 500 && code != 408 && code != 429) {
            /* an answer (missing, forbidden), not a hiccup: no retry; the part is no use */
            st = http_status_error(h, code, url);
            unlink(part);
            return st;
        }
        st = kiln_fail(h->err, KILN_EIO, "%s: downloading %s failed: %s", h->repo, s->path,
                       t.failed || !closed ? "cannot write the file" : curl_easy_strerror(rc));
        if (code >= 400) st = http_status_error(h, code, url); /* 5xx, 408, 429: try again */
        log_warn("%s (attempt %d of %d)", h->err ? h->err->msg : "download failed", attempt + 1,
                 MAX_ATTEMPTS);
        sleep(code >= 400 ? 2u << attempt : attempt > 0 ? 1u : 0u);
    }
    if (st != KILN_OK) return st; /* the part stays for a later resume */
    if ((st = verify(h, s, part)) != KILN_OK) {
        unlink(part);
        return st;
    }
    if (rename(part, dest) != 0)
        return kiln_fail(h->err, KILN_EIO, "%s: cannot move %s into place: %m", h->repo, dest);
    log_info("%s: %s verified (%llu bytes)", h->repo, s->path, (unsigned long long)s->size);
    return KILN_OK;
}

/* ---- which files ---------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Whether a GGUF file name answers a tag as choose() reads it: the same name (any case), or
 * for a quant tag, a name containing it. */
static bool tag_matches(const char *file, const char *tag)
{
    return !strcasecmp(file, tag) || (!ends_with(tag, ".gguf") && strcasestr(file, tag));
}

/* What a Hugging Face directory needs: top-level JSON, safetensors and vocab.txt, and the
 * sentence-transformers module configs (1_Pooling/config.json ...). */
static bool wanted_in_dir(const char *p)
{
    const char *slash = strchr(p, '/');
    if (!slash)
        return ends_with(p, ".json") || ends_with(p, ".safetensors") || !strcmp(p, "vocab.txt");
    return !strchr(slash + 1, '/') && !strcmp(slash + 1, "config.json") &&
           strstr(p, "_Pooling/") != NULL;
}

static kiln_status read_sibling(struct hub *h, json_t *e, struct sibling *s)
{
    json_t *lfs = json_object_get(e, "lfs");
    s->path = json_string_value(json_object_get(e, "rfilename"));
    json_t *size = json_object_get(lfs ? lfs : e, "size");
    s->sha256 = lfs ? json_string_value(json_object_get(lfs, "sha256")) : NULL;
    s->blob = json_string_value(json_object_get(e, "blobId"));
    if (!s->path || !relpath_ok(s->path))
        return kiln_fail(h->err, KILN_EFORMAT, "%s: the listing names a bad file path", h->repo);
    if (!json_is_integer(size) || json_integer_value(size) < 0 || (!s->sha256 && !s->blob))
        return kiln_fail(h->err, KILN_EFORMAT, "%s: the listing has no size or checksum for %s",
                         h->repo, s->path);
    s->size = (uint64_t)json_integer_value(size);
    return KILN_OK;
}

/* Picks the files to fetch: for a GGUF repo one .gguf file (by exact name or by a quant tag
 * contained in its name; the only one when no tag), else the directory's files. *gguf is
 * set to the chosen GGUF's index, or -1 for a directory. */
static kiln_status choose(struct hub *h, const struct sibling *all, size_t n, const char *tag,
                          bool *pick, long *gguf)
{
    bool has_config = false, has_weights = false;
    size_t n_gguf = 0;
    long match = -1;
    int matches = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = all[i].path;
        has_config |= !strcmp(p, "config.json");
        has_weights |= !strcmp(p, "model.safetensors") || !strcmp(p, "model.safetensors.index.json");
        if (!ends_with(p, ".gguf")) continue;
        n_gguf++;
        if (!tag || tag_matches(p, tag)) {
            match = (long)i;
            matches++;
        }
    }
    *gguf = -1;
    if (tag || (n_gguf > 0 && !(has_config && has_weights))) {
        if (matches != 1) {
            struct buf names = {0};
            for (size_t i = 0; i < n; i++)
                if (ends_with(all[i].path, ".gguf")) buf_printf(&names, " %s", all[i].path);
            kiln_status st = kiln_fail(h->err, KILN_EINVAL,
                                       "%s: %s GGUF file%s; name one as %s:QUANT or %s:FILE "
                                       "(available:%.120s)", h->repo,
                                       matches ? "more than one matching" : "no matching",
                                       tag ? "" : " to choose", h->repo, h->repo,
                                       names.p ? names.p : " none");
            buf_free(&names);
            return st;
        }
        pick[match] = true;
        *gguf = match;
        return KILN_OK;
    }
    if (!has_config || !has_weights)
        return kiln_fail(h->err, KILN_EUNSUPP, "%s: neither GGUF files nor config.json with "
                         "safetensors weights", h->repo);
    for (size_t i = 0; i < n; i++) pick[i] = wanted_in_dir(all[i].path);
    return KILN_OK;
}

/* ---- resolving ------------------------------------------------------------------------ */

/* A model already in the cache, as .kiln-complete records it: "dir" (a directory), "only F"
 * (the repo's one GGUF, fetched without a tag) or "gguf F" (fetched by a tag). Without a tag
 * only "dir" or "only" answer, as online; with one, exactly one recorded file must match. */
static bool cached(const struct hub *h, const char *tag, char *path, size_t cap)
{
    char p[8192];
    snprintf(p, sizeof p, "%s/" MARKER, h->repo_dir);
    FILE *f = fopen(p, "r");
    if (!f) return false;
    char line[2048], found[2048] = "";
    int matches = 0;
    bool dir = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        const char *file = !strncmp(line, "gguf ", 5) ? line + 5
                           : !strncmp(line, "only ", 5) ? line + 5
                                                        : NULL;
        if (!strcmp(line, "dir")) dir = true;
        if (!file || !relpath_ok(file)) continue;
        bool hit = tag ? tag_matches(file, tag) : !strncmp(line, "only ", 5);
        if (hit && strcmp(found, file) != 0) {
            matches++;
            snprintf(found, sizeof found, "%s", file);
        }
    }
    fclose(f);
    if (!tag && dir) {
        snprintf(path, cap, "%s", h->repo_dir);
        return true;
    }
    if (matches != 1) return false;
    snprintf(p, sizeof p, "%s/%s", h->repo_dir, found);
    if (!exists(p)) return false;
    snprintf(path, cap, "%s", p);
    return true;
}

static kiln_status download(struct hub *h, const char *tag, char *path, size_t cap)
{
    json_t *listing = NULL;
    kiln_status st = list_files(h, &listing);
    if (st != KILN_OK) return st;
    json_t *sibs = json_object_get(listing, "siblings"), *e;
    size_t n = json_array_size(sibs), i;
    struct sibling *all = calloc(n ? n : 1, sizeof *all);
    bool *pick = calloc(n ? n : 1, sizeof *pick);
    if (!all || !pick) st = kiln_fail(h->err, KILN_ENOMEM, "out of memory");
    json_array_foreach(sibs, i, e) {
        if (st != KILN_OK) break;
        st = read_sibling(h, e, &all[i]);
    }
    long gguf = -1;
    if (st == KILN_OK) st = choose(h, all, n, tag, pick, &gguf);
    uint64_t total = 0;
    for (i = 0; st == KILN_OK && i < n; i++) total += pick[i] ? all[i].size : 0;
    if (st == KILN_OK)
        log_info("%s: fetching %.1f MB from %s into %s", h->repo, (double)total / 1e6,
                 h->endpoint, h->repo_dir);
    for (i = 0; st == KILN_OK && i < n; i++) {
        if (!pick[i]) continue;
        char dest[8192];
        snprintf(dest, sizeof dest, "%s/%s", h->repo_dir, all[i].path);
        if (exists(dest) && verify(h, &all[i], dest) == KILN_OK) continue; /* from an earlier run */
        st = fetch_file(h, &all[i]);
    }
    if (st == KILN_OK) { /* record what is complete, so later runs (and offline) use it */
        char marker[8192];
        snprintf(marker, sizeof marker, "%s/" MARKER, h->repo_dir);
        FILE *f = fopen(marker, "a");
        if (f) {
            if (gguf >= 0) fprintf(f, "%s %s\n", tag ? "gguf" : "only", all[gguf].path);
            else fputs("dir\n", f);
            fclose(f);
        }
        if (gguf >= 0) snprintf(path, cap, "%s/%s", h->repo_dir, all[gguf].path);
        else snprintf(path, cap, "%s", h->repo_dir);
    }
    char incomplete[8192]; /* kept only while it holds a partial file to resume */
    snprintf(incomplete, sizeof incomplete, "%s/.incomplete", h->repo_dir);
    remove_empty_dirs(incomplete);
    free(all);
    free(pick);
    json_decref(listing);
    return st;
}

kiln_status hub_resolve(const char *spec, char *path, size_t cap, struct kiln_err *err)
{
    if (exists(spec)) {
        snprintf(path, cap, "%s", spec);
        return KILN_OK;
    }
    if (!hub_is_repo_id(spec))
        return kiln_fail(err, KILN_EINVAL, "%s: no such file or directory (and not a Hugging "
                         "Face repo id like org/name)", spec);
    char repo[256];
    const char *colon = strchr(spec, ':');
    snprintf(repo, sizeof repo, "%.*s", (int)(colon ? (size_t)(colon - spec) : strlen(spec)), spec);
    const char *tag = colon ? colon + 1 : NULL;
    struct hub h = {.repo = repo, .err = err};
    const char *endpoint = getenv("HF_ENDPOINT");
    snprintf(h.endpoint, sizeof h.endpoint, "%s", endpoint && endpoint[0] ? endpoint
                                                                          : "https://huggingface.co");
    for (size_t n = strlen(h.endpoint); n > 0 && h.endpoint[n - 1] == '/';) h.endpoint[--n] = 0;
    h.token = getenv("HF_TOKEN");
    cache_root(h.root, sizeof h.root);
    snprintf(h.repo_dir, sizeof h.repo_dir, "%s/%s", h.root, repo);
    if (cached(&h, tag, path, cap)) return KILN_OK;
    const char *offline = getenv("KILN_OFFLINE");
    if (offline && offline[0] && strcmp(offline, "0") != 0)
        return kiln_fail(err, KILN_EIO, "%s is not in the model cache (%s) and KILN_OFFLINE is "
                         "set", spec, h.root);
    /* one download of a repo at a time, across processes (kiln serve and kiln pull) */
    char lock_path[8192];
    snprintf(lock_path, sizeof lock_path, "%s/.lock", h.repo_dir);
    int fd = make_parents(lock_path) ? open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (fd < 0)
        return kiln_fail(err, KILN_EIO, "%s: cannot create %s: %m", repo, lock_path);
    flock(fd, LOCK_EX);
    kiln_status st = cached(&h, tag, path, cap) ? KILN_OK : download(&h, tag, path, cap);
    flock(fd, LOCK_UN);
    close(fd);
    return st;
}
