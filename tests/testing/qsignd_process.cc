#include "tests/testing/qsignd_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/daemon/config.h"
#include "common/file.h"
#include "common/strings.h"
#include "google/protobuf/text_format.h"
#include "tests/testing/service_env.h"

extern char** environ;

namespace qsign::testing {
namespace {

// "" when missing: a log not written yet reads as empty.
std::string ReadFile(const std::string& path) { return ReadFileToString(path).value_or(""); }

// posix_spawn with stdin from /dev/null and stdout+stderr to `out_path`.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, const std::string& out_path) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_adddup2(&actions, 2, 1);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("cannot run ", args[0], ": ", rc));
  return pid;
}

}  // namespace

void SetTokens(config::v1::ServerConfig& c, const hsm::Pkcs11TokensConfig& tokens) {
  c.mutable_hsm()->set_module(tokens.module_path);
  c.mutable_hsm()->clear_token();
  const std::vector<std::string_view> needed = NeededTokenRoles(c);
  for (const hsm::Pkcs11TokenConfig& t : tokens.tokens) {
    if (std::find(needed.begin(), needed.end(), t.role) == needed.end()) continue;
    config::v1::HsmToken* token = c.mutable_hsm()->add_token();
    token->set_role(t.role);
    token->set_label(t.token_label);
    token->set_pin_file(t.pin_file);
    token->set_sessions(t.session_pool_size);
  }
}

config::v1::ServerConfig LaptopConfig(std::string_view conninfo,
                                      const hsm::Pkcs11TokensConfig& tokens,
                                      const std::vector<std::string>& services,
                                      const std::string& dir) {
  config::v1::ServerConfig c;
  c.set_listen("127.0.0.1:0");
  c.set_insecure_dev(true);
  c.set_create_missing_keys(true);
  c.mutable_database()->set_conninfo(std::string(conninfo));
  c.mutable_database()->set_pool_size(4);
  const std::string sad_key_file = SadPublicKeyPath(dir);
  for (const std::string& service : services) {
    if (service == "signer") {
      config::v1::SadKey* key = c.mutable_signer()->add_sad_keys();
      key->set_key_id("qsign-sad-1");
      key->set_public_key_file(sad_key_file);
    } else if (service == "consent") {
      c.mutable_consent()->set_sad_public_key_file(sad_key_file);
    } else if (service == "identity") {
      c.mutable_identity();
    } else if (service == "lifecycle") {
      c.mutable_lifecycle();
    } else if (service == "gateway") {
      c.mutable_gateway();
    }
  }
  SetTokens(c, tokens);
  return c;
}

void WriteConfig(const config::v1::ServerConfig& config, const std::string& path) {
  std::string text;
  google::protobuf::TextFormat::PrintToString(config, &text);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

absl::StatusOr<std::unique_ptr<QsigndProcess>> QsigndProcess::Start(
    const std::string& binary, const config::v1::ServerConfig& config, const std::string& dir,
    const std::string& name, absl::Duration ready_within) {
  const std::string config_path = absl::StrCat(dir, "/", name, ".textproto");
  const std::string log_path = absl::StrCat(dir, "/", name, ".log");
  WriteConfig(config, config_path);
  auto pid = Spawn({binary, "--config=" + config_path}, log_path);
  if (!pid.ok()) return pid.status();
  std::unique_ptr<QsigndProcess> p(new QsigndProcess(*pid, config_path, log_path));
  if (absl::Status s = p->WaitReady(ready_within); !s.ok()) return s;
  return p;
}

QsigndProcess::~QsigndProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

std::string QsigndProcess::target() const { return absl::StrCat("127.0.0.1:", port_); }

std::string QsigndProcess::log() const { return ReadFile(log_path_); }

int QsigndProcess::LoggedPort(std::string_view msg, std::string_view field) const {
  const std::regex re(absl::StrCat("\"msg\":\"", Av(msg), "\".*\"", Av(field), "\":\"([0-9]+)\""));
  const std::string text = log();
  std::smatch m;
  return std::regex_search(text, m, re) ? std::stoi(m[1]) : 0;
}

absl::Status QsigndProcess::WaitReady(absl::Duration within) {
  const std::regex ready_re("\"msg\":\"ready\".*\"port\":\"([0-9]*)\"");
  const absl::Time deadline = absl::Now() + within;
  for (;;) {
    const std::string text = log();
    std::smatch m;
    if (std::regex_search(text, m, ready_re)) {
      port_ = m[1].length() > 0 ? std::stoi(m[1]) : 0;
      return absl::OkStatus();
    }
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("exited during start-up:\n", text));
    }
    if (absl::Now() > deadline) return absl::DeadlineExceededError("not ready:\n" + text);
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void QsigndProcess::Terminate() {
  if (pid_ > 0) kill(pid_, SIGTERM);
}

std::optional<int> QsigndProcess::WaitExit(absl::Duration timeout) {
  if (pid_ <= 0) return std::nullopt;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    if (absl::Now() > deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

int QsigndProcess::SignalAndWait(int signal) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

CheckConfigResult CheckConfig(const std::string& binary, const std::string& config_path) {
  const std::string out_path = config_path + ".check";
  auto pid = Spawn({binary, "--config=" + config_path, "--check_config"}, out_path);
  if (!pid.ok()) return {.exit_code = -1, .output = std::string(pid.status().message())};
  int status = 0;
  waitpid(*pid, &status, 0);
  return {.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1, .output = ReadFile(out_path)};
}

}  // namespace qsign::testing
