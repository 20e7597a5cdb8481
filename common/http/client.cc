#include "common/http/client.h"

#include <curl/curl.h>

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign::http {
namespace {

struct Sink {
  std::string body;
  size_t limit = 0;
  bool overflow = false;
};

size_t Write(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  if (sink->body.size() + size * n > sink->limit) {
    sink->overflow = true;
    return 0;  // Makes curl stop with CURLE_WRITE_ERROR.
  }
  sink->body.append(data, size * n);
  return size * n;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// One request: a POST of `body` when `content_type` is set, else a GET.
absl::StatusOr<std::string> Fetch(const std::string& url, std::string_view content_type,
                                  std::string_view body, absl::Duration timeout,
                                  size_t max_response_bytes) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return absl::InternalError("curl_easy_init failed");
  std::unique_ptr<curl_slist, CurlDeleter> headers;
  Sink sink{.limit = max_response_bytes};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!content_type.empty()) {
    headers.reset(
        curl_slist_append(nullptr, absl::StrCat("Content-Type: ", Av(content_type)).c_str()));
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  }
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  const CURLcode rc = curl_easy_perform(c);
  if (sink.overflow) {
    return absl::ResourceExhaustedError(
        absl::StrCat(url, ": answer larger than ", max_response_bytes, " bytes"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat(url, ": ", curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    return absl::FailedPreconditionError(absl::StrCat(url, ": HTTP ", status));
  }
  return std::move(sink.body);
}

}  // namespace

absl::StatusOr<std::string> Post(const std::string& url, std::string_view content_type,
                                 std::string_view body, absl::Duration timeout,
                                 size_t max_response_bytes) {
  return Fetch(url, content_type, body, timeout, max_response_bytes);
}

absl::StatusOr<std::string> Get(const std::string& url, absl::Duration timeout,
                                size_t max_response_bytes) {
  return Fetch(url, "", "", timeout, max_response_bytes);
}

}  // namespace qsign::http
