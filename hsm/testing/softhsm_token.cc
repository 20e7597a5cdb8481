#include "hsm/testing/softhsm_token.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/secret.h"
#include "common/strings.h"

extern char** environ;

namespace qsign::hsm::testing {
namespace {

absl::StatusOr<SecretString> RandomDigits(int count) {
  std::string digits;
  while (static_cast<int>(digits.size()) < count) {
    unsigned char byte = 0;
    if (RAND_bytes(&byte, 1) != 1) return absl::InternalError("RAND_bytes failed");
    if (byte >= 250) continue;  // Keep the digits uniform.
    digits.push_back(static_cast<char>('0' + byte % 10));
  }
  return SecretString(std::move(digits));
}

absl::Status WriteFile(const std::string& path, std::string_view content, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat("cannot write ", path, ": ", std::strerror(err)));
    }
    written += static_cast<size_t>(n);
  }
  if (close(fd) != 0) {
    return absl::InternalError(absl::StrCat("cannot close ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string ReadLog(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs argv[0] with stdout and stderr going to `log_path`; the exit status, or an error.
absl::StatusOr<int> Run(const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("cannot run ", args[0], ": ", std::strerror(rc)));
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) {
      return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
    }
  }
  if (!WIFEXITED(wstatus)) return absl::InternalError(absl::StrCat(args[0], " was killed"));
  return WEXITSTATUS(wstatus);
}

}  // namespace

std::string SoftHsmToken::ModulePath() { return QSIGN_SOFTHSM2_MODULE; }
std::string SoftHsmToken::UtilPath() { return QSIGN_SOFTHSM2_UTIL; }

SoftHsmToken::SoftHsmToken(std::string dir, std::string label,
                           std::optional<std::string> previous_conf)
    : dir_(std::move(dir)),
      label_(std::move(label)),
      conf_file_(dir_ + "/softhsm2.conf"),
      pin_file_(dir_ + "/user.pin"),
      previous_conf_(std::move(previous_conf)) {}

absl::StatusOr<std::unique_ptr<SoftHsmToken>> SoftHsmToken::Create(std::string label) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp", "/qsign-softhsm-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", pattern, " failed: ", std::strerror(errno)));
  }
  const char* previous = std::getenv("SOFTHSM2_CONF");
  // From here on the destructor cleans up whatever was made.
  std::unique_ptr<SoftHsmToken> token(
      new SoftHsmToken(pattern, std::move(label),
                       previous != nullptr ? std::optional<std::string>(previous) : std::nullopt));

  const std::string token_dir = token->dir_ + "/tokens";
  if (mkdir(token_dir.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("mkdir ", token_dir, ": ", std::strerror(errno)));
  }
  absl::Status status = WriteFile(token->conf_file_,
                                  absl::StrCat("directories.tokendir = ", token_dir,
                                               "\nobjectstore.backend = file\n"
                                               "log.level = ERROR\n"
                                               "slots.removable = false\n"),
                                  0600);
  if (!status.ok()) return status;
  if (setenv("SOFTHSM2_CONF", token->conf_file_.c_str(), 1) != 0) {
    return absl::InternalError(absl::StrCat("setenv SOFTHSM2_CONF: ", std::strerror(errno)));
  }

  status = token->InitToken(token->label_, token->pin_file_);
  if (!status.ok()) return status;
  return token;
}

absl::Status SoftHsmToken::InitToken(const std::string& label, const std::string& pin_file) {
  absl::StatusOr<SecretString> user_pin = RandomDigits(8);
  if (!user_pin.ok()) return user_pin.status();
  absl::StatusOr<SecretString> so_pin = RandomDigits(8);
  if (!so_pin.ok()) return so_pin.status();
  // softhsm2-util takes PINs only on its command line; these are throw-away test PINs.
  std::vector<std::string> args = {UtilPath(),
                                   "--init-token",
                                   "--free",
                                   "--label",
                                   label,
                                   "--pin",
                                   std::string(user_pin->value()),
                                   "--so-pin",
                                   std::string(so_pin->value())};
  const std::string log_path = dir_ + "/softhsm2-util.log";
  // softhsm2-util reads SOFTHSM2_CONF: this token's directory, whatever the process has now.
  const char* current = std::getenv("SOFTHSM2_CONF");
  const std::optional<std::string> saved =
      current != nullptr ? std::optional<std::string>(current) : std::nullopt;
  setenv("SOFTHSM2_CONF", conf_file_.c_str(), 1);
  absl::StatusOr<int> exit_code = Run(args, log_path);
  if (saved.has_value()) setenv("SOFTHSM2_CONF", saved->c_str(), 1);
  for (size_t i : {6, 8}) OPENSSL_cleanse(args[i].data(), args[i].size());
  if (!exit_code.ok()) return exit_code.status();
  if (*exit_code != 0) {
    return absl::InternalError(absl::StrCat("softhsm2-util --init-token exited with ", *exit_code,
                                            ": ", ReadLog(log_path)));
  }
  return WriteFile(pin_file, absl::StrCat(Av(user_pin->value()), "\n"), 0600);
}

absl::StatusOr<Pkcs11Config> SoftHsmToken::AddToken(const std::string& label,
                                                    int session_pool_size) {
  Pkcs11Config config = this->config(session_pool_size);
  config.token_label = label;
  config.pin_file = absl::StrCat(dir_, "/", label, ".pin");
  if (absl::Status s = InitToken(label, config.pin_file); !s.ok()) return s;
  return config;
}

SoftHsmToken::~SoftHsmToken() {
  const char* current = std::getenv("SOFTHSM2_CONF");
  if (current != nullptr && current == conf_file_) {
    if (previous_conf_.has_value()) {
      setenv("SOFTHSM2_CONF", previous_conf_->c_str(), 1);
    } else {
      unsetenv("SOFTHSM2_CONF");
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

Pkcs11Config SoftHsmToken::config(int session_pool_size) const {
  Pkcs11Config config;
  config.module_path = ModulePath();
  config.token_label = label_;
  config.pin_file = pin_file_;
  config.session_pool_size = session_pool_size;
  return config;
}

}  // namespace qsign::hsm::testing
