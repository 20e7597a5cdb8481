#include "tools/cli/output.h"

#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace qsign::cli {
namespace {

using Json = nlohmann::ordered_json;

// One line of JSON; UTF-8 passes through, invalid UTF-8 becomes U+FFFD rather than throwing.
void PrintJson(const Json& json) {
  std::cout << json.dump(-1, ' ', false, Json::error_handler_t::replace) << std::endl;
}

Json Object(const std::vector<std::pair<std::string, std::string>>& fields) {
  Json json = Json::object();
  for (const auto& [key, value] : fields) json[key] = value;
  return json;
}

std::string Hint(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAUTHENTICATED:
      return " (log in again: qsign login --username=...)";
    case grpc::StatusCode::PERMISSION_DENIED:
      return " (this needs other credentials: an operator's, or the account owner's)";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return " (a step before this one is missing; see qsign status)";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return " (fix the argument named above; qsign --help lists them)";
    default:
      return "";
  }
}

std::string CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : absl::StrCat(i);
}

}  // namespace

Failure Usage(const std::string& what) {
  return {kUsage, absl::StrCat(what, " (qsign --help shows every command)")};
}

Failure FromGrpc(const std::string& what, const grpc::Status& s, const std::string& server) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return {kUnreachable,
            absl::StrCat(what, ": cannot reach qsign at ", server, " (", s.error_message(),
                         "); is qsignd running? set --server or $QSIGN_SERVER")};
  }
  return {kRefused, absl::StrCat(what, ": refused: ", CodeName(s.error_code()), ": ",
                                 s.error_message(), Hint(s.error_code()))};
}

Failure FromStatus(const std::string& what, const absl::Status& s, const std::string& server) {
  if (s.code() == absl::StatusCode::kUnavailable) {
    return {kUnreachable, absl::StrCat(what, ": cannot reach qsign at ", server, " (", s.message(),
                                       "); is qsignd running?")};
  }
  return {kRefused, absl::StrCat(what, ": ", s.ToString())};
}

void Output::Print(const std::string& headline) const {
  if (json_) {
    PrintJson(Object(fields_));
    return;
  }
  if (!headline.empty()) std::cout << headline << std::endl;
  for (const auto& [key, value] : fields_) std::cout << "  " << key << ": " << value << std::endl;
}

void Output::Line(const std::string& human,
                  const std::vector<std::pair<std::string, std::string>>& json_fields) const {
  if (!json_) {
    std::cout << human << std::endl;
  } else if (!json_fields.empty()) {
    PrintJson(Object(json_fields));
  }
}

int Output::Report(const Failure& failure) const {
  if (json_) {
    Json json = Json::object();
    json["error"] = failure.message;
    json["exit_code"] = failure.code;
    PrintJson(json);
  } else {
    std::cerr << "qsign: " << failure.message << std::endl;
  }
  return failure.code;
}

}  // namespace qsign::cli
