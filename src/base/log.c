/* Leveled logging with timestamps; one line per message, written atomically.
 * Contract: src/base/log.h. */
#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level g_level = LOG_WARN;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};
static FILE *g_file; /* NULL: stderr */

int log_level_parse(const char *name)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    if (strcmp(name, "warning") == 0) return LOG_WARN;
    return -1;
}

void log_set_level(enum log_level level)
{
    g_level = level;
}

bool log_open_file(const char *path)
{
    FILE *f = fopen(path, "a");
    if (!f) return false;
    setvbuf(f, NULL, _IOLBF, 0);
    pthread_mutex_lock(&g_lock);
    if (g_file) fclose(g_file);
    g_file = f;
    pthread_mutex_unlock(&g_lock);
    return true;
}

enum log_level log_get_level(void)
{
    return g_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < g_level || level >= LOG_OFF) return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_lock);
    fprintf(g_file ? g_file : stderr, "%s\n", line);
    pthread_mutex_unlock(&g_lock);
}
