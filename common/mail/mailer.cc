#include "common/mail/mailer.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace qsign {
namespace {

// Header values never carry CR or LF (no header injection).
std::string HeaderValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
  return out;
}

bool Ascii(std::string_view v) {
  return std::all_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// RFC 2047 encoded word when the subject is not plain ASCII.
std::string EncodedSubject(std::string_view subject) {
  std::string clean = HeaderValue(subject);
  if (Ascii(clean)) return clean;
  return absl::StrCat("=?UTF-8?B?", absl::Base64Escape(clean), "?=");
}

struct Upload {
  std::string data;
  size_t offset = 0;
};

size_t ReadPayload(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* up = static_cast<Upload*>(userdata);
  const size_t room = size * nitems;
  const size_t n = std::min(room, up->data.size() - up->offset);
  std::memcpy(buffer, up->data.data() + up->offset, n);
  up->offset += n;
  return n;
}

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string FormatMail(std::string_view from, std::string_view to, std::string_view subject,
                       std::string_view body, absl::Time date) {
  std::string out = absl::StrCat(
      "Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", date, absl::UTCTimeZone()),
      "\r\nFrom: <", HeaderValue(from), ">\r\nTo: <", HeaderValue(to),
      ">\r\nSubject: ", EncodedSubject(subject),
      "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n");
  // CRLF line ends; libcurl dot-stuffs lines that start with '.'.
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == '\r') continue;
    if (c == '\n') {
      out += "\r\n";
    } else {
      out.push_back(c);
    }
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

SmtpMailer::SmtpMailer(SmtpConfig config) : config_(std::move(config)) { GlobalInit(); }

absl::Status SmtpMailer::Send(std::string_view to, std::string_view subject,
                              std::string_view body) {
  if (to.empty() || to.find_first_of("\r\n<>") != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad recipient \"", Av(to), "\""));
  }
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  Upload up{.data = FormatMail(config_.from, to, subject, body, absl::Now())};
  const std::string from = absl::StrCat("<", config_.from, ">");
  const std::string rcpt = absl::StrCat("<", Av(to), ">");
  curl_slist* rcpts = curl_slist_append(nullptr, rcpt.c_str());
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, config_.url.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, rcpts);
  curl_easy_setopt(curl, CURLOPT_READFUNCTION, &ReadPayload);
  curl_easy_setopt(curl, CURLOPT_READDATA, &up);
  curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  const long timeout_ms = static_cast<long>(absl::ToInt64Milliseconds(config_.timeout));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
  // Upgrade to TLS when the server offers it; smtps:// URLs are TLS from the start.
  curl_easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_TRY));
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(rcpts);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return absl::UnavailableError(absl::StrCat("smtp: ", curl_easy_strerror(rc),
                                               error[0] != '\0' ? absl::StrCat(": ", error) : ""));
  }
  return absl::OkStatus();
}

absl::Status MailDropMailer::Send(std::string_view to, std::string_view subject,
                                  std::string_view body) {
  static std::atomic<uint64_t> sequence{0};
  const std::string name =
      absl::StrCat(dir_, "/", absl::ToUnixMicros(absl::Now()), "-", sequence++, ".eml");
  const std::string partial = absl::StrCat(name, ".part");
  const std::string message = FormatMail(from_, to, subject, body, absl::Now());
  int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ENOENT && ::mkdir(dir_.c_str(), 0700) == 0) {
    fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("mail drop: ", partial, ": ", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < message.size()) {
    const ssize_t n = ::write(fd, message.data() + written, message.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat("mail drop: ", partial, ": ", std::strerror(err)));
    }
    written += static_cast<size_t>(n);
  }
  if (::close(fd) != 0 || ::rename(partial.c_str(), name.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("mail drop: ", name, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace qsign
