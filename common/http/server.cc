#include "common/http/server.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace qsign::http {

std::string_view Request::Header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(Av(n), Av(name))) return v;
  }
  return {};
}

size_t Request::HeaderCount(std::string_view name) const {
  size_t count = 0;
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(Av(n), Av(name))) ++count;
  }
  return count;
}

std::string_view Request::Param(std::string_view name) const {
  for (const auto& [n, v] : params) {
    if (n == name) return v;
  }
  return {};
}

const Request::FilePart* Request::File(std::string_view name) const {
  for (const FilePart& part : files) {
    if (part.name == name) return &part;
  }
  return nullptr;
}

void Response::SetHeader(std::string_view name, std::string_view value) {
  for (auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, Av(name))) {
      v = std::string(value);
      return;
    }
  }
  headers.emplace_back(std::string(name), std::string(value));
}

bool Response::HasHeader(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, Av(name))) return true;
  }
  return false;
}

absl::StatusOr<std::pair<std::string, int>> ParseHostPort(std::string_view address) {
  std::string host;
  std::string_view port_text;
  if (absl::StartsWith(Av(address), "[")) {
    const size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return absl::InvalidArgumentError("expected host:port");
    }
    host = std::string(address.substr(1, close - 1));
    port_text = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return absl::InvalidArgumentError("expected host:port");
    host = std::string(address.substr(0, colon));
    port_text = address.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return absl::InvalidArgumentError("expected host:port ([addr]:port for IPv6)");
    }
  }
  int port = -1;
  if (host.empty() || port_text.empty() || !absl::SimpleAtoi(Av(port_text), &port) || port < 0 ||
      port > 65535 || host.find_first_of(" \t/") != std::string::npos) {
    return absl::InvalidArgumentError("expected host:port (port 0..65535)");
  }
  return std::make_pair(host, port);
}

}  // namespace qsign::http
