#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/request_id.h"

namespace qsign {
namespace {

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<LogSink> sink{nullptr};

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

void AppendJsonString(std::string_view in, std::string* out) {
  out->push_back('"');
  for (unsigned char c : in) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void SetMinLogLevel(LogLevel level) { min_level.store(static_cast<int>(level)); }

void SetLogSinkForTesting(LogSink s) { sink.store(s); }

void Log(LogLevel level, std::string_view component, std::string_view message,
         std::initializer_list<LogField> fields) {
  if (static_cast<int>(level) < min_level.load(std::memory_order_relaxed)) return;
  std::string line = "{\"ts\":";
  AppendJsonString(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone()),
                   &line);
  line.append(",\"level\":");
  AppendJsonString(LevelName(level), &line);
  line.append(",\"component\":");
  AppendJsonString(component, &line);
  line.append(",\"msg\":");
  AppendJsonString(message, &line);
  const std::string_view request_id = request_id::Current();
  if (!request_id.empty()) {
    bool named = false;
    for (const auto& field : fields) named = named || field.first == "request_id";
    if (!named) {
      line.append(",\"request_id\":");
      AppendJsonString(request_id, &line);
    }
  }
  for (const auto& [key, value] : fields) {
    line.push_back(',');
    AppendJsonString(key, &line);
    line.push_back(':');
    AppendJsonString(value, &line);
  }
  line.append("}\n");
  if (LogSink s = sink.load(std::memory_order_acquire); s != nullptr) {
    s(line);
    return;
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace qsign
