/* Leveled logging to stderr or a log file. Thread-safe: any thread may log.
 * Contract for src/base/log.c. */
#ifndef KILN_BASE_LOG_H
#define KILN_BASE_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* Parses "debug", "info", "warn", "error" or "off"; returns -1 when unknown. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
/* Appends the log to path instead of stderr; false when it cannot be opened. */
bool log_open_file(const char *path);
enum log_level log_get_level(void);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
