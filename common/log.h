// Structured logs: one JSON object per line on stderr. Never pass a PIN, token, SAD or key.
// A line written while a request is handled carries its "request_id" (common/request_id.h).
#ifndef QSIGN_COMMON_LOG_H_
#define QSIGN_COMMON_LOG_H_

#include <initializer_list>
#include <string_view>
#include <utility>

namespace qsign {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogField = std::pair<std::string_view, std::string_view>;

// {"ts":"2026-11-21T23:59:59.123456Z","level":"info","component":"signer","msg":"...",
//  "request_id":"...",k:v...}; request_id only inside a request, and not when `fields` has one.
void Log(LogLevel level, std::string_view component, std::string_view message,
         std::initializer_list<LogField> fields = {});

// Lines below this level are dropped (default kInfo).
void SetMinLogLevel(LogLevel level);

// Where lines go instead of stderr (each with its trailing newline), until reset with nullptr.
// For tests; `sink` may be called from any thread.
using LogSink = void (*)(std::string_view line);
void SetLogSinkForTesting(LogSink sink);

// JSON string escaping, exposed for tests.
void AppendJsonString(std::string_view in, std::string* out);

}  // namespace qsign

#endif  // QSIGN_COMMON_LOG_H_
