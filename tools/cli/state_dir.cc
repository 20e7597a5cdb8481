#include "tools/cli/state_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file.h"

namespace qsign::cli {
namespace {

absl::Status MakeDir(const std::string& dir) {
  std::string partial;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    absl::StrAppend(&partial, part, "/");
    if (part.empty()) continue;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create"));
    }
  }
  return absl::OkStatus();
}

// key=value lines.
std::map<std::string, std::string> ParseKv(const std::string& text) {
  std::map<std::string, std::string> kv;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(line, absl::MaxSplits('=', 1));
    kv[p.first] = p.second;
  }
  return kv;
}

std::string FormatKv(const std::map<std::string, std::string>& kv) {
  std::string out;
  for (const auto& [k, v] : kv) absl::StrAppend(&out, k, "=", v, "\n");
  return out;
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  {
    const mode_t old = ::umask(0077);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    ::umask(old);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot write"));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot write"));
  }
  if (::chmod(tmp.c_str(), mode) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  }
  return absl::OkStatus();
}

absl::StatusOr<StateDir::Session> StateDir::LoadSession() const {
  absl::StatusOr<std::string> text = ReadFileToString(SessionPath());
  if (!text.ok()) return absl::NotFoundError(absl::StrCat(SessionPath(), ": cannot open"));
  std::map<std::string, std::string> kv = ParseKv(*text);
  return Session{kv["token"], kv["account_id"], kv["username"]};
}

absl::Status StateDir::SaveSession(const Session& session) const {
  if (absl::Status s = MakeDir(path_); !s.ok()) return s;
  return WriteFileAtomically(SessionPath(),
                             FormatKv({{"token", session.token},
                                       {"account_id", session.account_id},
                                       {"username", session.username}}),
                             0600);
}

absl::StatusOr<StateDir::Device> StateDir::LoadDevice() const {
  absl::StatusOr<std::string> pem = ReadFileToString(AppDir() + "/device-key.pem");
  absl::StatusOr<std::string> ids = ReadFileToString(AppDir() + "/device");
  if (!pem.ok() || !ids.ok()) return absl::NotFoundError(absl::StrCat(AppDir(), ": no app"));
  std::map<std::string, std::string> kv = ParseKv(*ids);
  return Device{*std::move(pem), kv["device_id"], kv["account_id"]};
}

absl::Status StateDir::SaveDevice(const Device& device) const {
  if (absl::Status s = MakeDir(AppDir()); !s.ok()) return s;
  if (absl::Status s =
          WriteFileAtomically(AppDir() + "/device-key.pem", device.private_key_pem, 0600);
      !s.ok()) {
    return s;
  }
  return WriteFileAtomically(
      AppDir() + "/device",
      FormatKv({{"device_id", device.device_id}, {"account_id", device.account_id}}), 0600);
}

absl::Status StateDir::SaveCertificate(const std::string& certificate_pem,
                                       const std::string& chain_pem) const {
  if (absl::Status s = MakeDir(path_); !s.ok()) return s;
  if (absl::Status s = WriteFileAtomically(CertificatePath(), certificate_pem, 0644); !s.ok()) {
    return s;
  }
  return WriteFileAtomically(ChainPath(), chain_pem, 0644);
}

}  // namespace qsign::cli
