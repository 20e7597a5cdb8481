#include "common/db/testing/pg_server.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <linux/magic.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/pg.h"

extern char** environ;

#ifndef QSIGN_PG_BIN_DIR
#error "QSIGN_PG_BIN_DIR must name the PostgreSQL server bin directory"
#endif

namespace qsign::db::testing {
namespace {

constexpr char kPgBinDir[] = QSIGN_PG_BIN_DIR;
constexpr int kPort = 5432;  // Only names the socket file; there is no TCP listener.

std::string PgBin(const char* name) { return absl::StrCat(kPgBinDir, "/", name); }

absl::Status ErrnoError(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// The last `max` bytes of a file, for error messages.
std::string Tail(const std::string& path, size_t max = 3000) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  if (s.size() > max) s = "..." + s.substr(s.size() - max);
  return s;
}

// Somewhere short (the socket path must fit in sockaddr_un) and plain (no quoting anywhere):
// $TMPDIR if set and it qualifies; else /dev/shm when it is a roomy tmpfs (copying a data
// directory there is ~10x faster than onto a disk); else /tmp.
std::string BaseDir() {
  const char* env = std::getenv("TMPDIR");
  if (env != nullptr && *env == '/' && std::strlen(env) <= 60) {
    bool plain = true;
    for (const char* p = env; *p; ++p) {
      char c = *p;
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '/' || c == '.' || c == '_' || c == '-')) {
        plain = false;
      }
    }
    if (plain) {
      std::string base(env);
      while (base.size() > 1 && base.back() == '/') base.pop_back();
      return base;
    }
  }
  struct statfs fs;
  if (statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC &&
      static_cast<uint64_t>(fs.f_bavail) * fs.f_bsize >= (uint64_t{2} << 30) &&
      access("/dev/shm", W_OK | X_OK) == 0) {
    return "/dev/shm";
  }
  return "/tmp";
}

// Who owns and runs the server: ourselves, or "postgres" when we are root.
struct RunAs {
  bool via_runuser = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

absl::StatusOr<RunAs> ServerUser() {
  RunAs as;
  if (geteuid() != 0) {
    as.uid = geteuid();
    as.gid = getegid();
    return as;
  }
  struct passwd pw;
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return absl::FailedPreconditionError(
        "running as root, but there is no \"postgres\" user to run PostgreSQL as (initdb and "
        "postgres refuse root); install the postgresql package or run as another user");
  }
  as.via_runuser = true;
  as.uid = pw.pw_uid;
  as.gid = pw.pw_gid;
  return as;
}

std::string RunuserPath() {
  for (const char* p : {"/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "runuser";
}

std::vector<std::string> AsServerUser(const RunAs& as, std::vector<std::string> argv) {
  if (!as.via_runuser) return argv;
  std::vector<std::string> out = {RunuserPath(), "-u", "postgres", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

// Starts argv (PATH is searched) in `cwd`, stdin from /dev/null, stdout and stderr appended to
// `log`.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& cwd,
                            const std::string& log) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("cannot run ", absl::StrJoin(argv, " "), ": ", std::strerror(rc)));
  }
  return pid;
}

// Runs argv to completion; OK on exit status 0.
absl::Status Run(const std::vector<std::string>& argv, const std::string& cwd,
                 const std::string& log) {
  absl::StatusOr<pid_t> pid = Spawn(argv, cwd, log);
  if (!pid.ok()) return pid.status();
  int wstatus = 0;
  while (waitpid(*pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return ErrnoError(absl::StrCat("waitpid for ", argv[0]));
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("`", absl::StrJoin(argv, " "), "` failed (wait status ",
                                          wstatus, "); output:\n", Tail(log)));
}

// The postmaster's pid from the first line of postmaster.pid, or -1.
pid_t PostmasterPid(const std::string& data) {
  std::ifstream in(data + "/postmaster.pid");
  long pid = -1;
  if (!(in >> pid) || pid <= 0) return -1;
  return static_cast<pid_t>(pid);
}

// runuser'd binaries need to reach the directory: add search (x, not read) permission for others
// on each ancestor that lacks it.
absl::Status MakeAncestorsTraversable(const std::string& dir) {
  std::filesystem::path p = std::filesystem::path(dir).parent_path();
  for (; !p.empty(); p = p.parent_path()) {
    struct stat st;
    if (stat(p.c_str(), &st) != 0) return ErrnoError(absl::StrCat("stat ", p.string()));
    if ((st.st_mode & S_IXOTH) == 0 && chmod(p.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
      return ErrnoError(absl::StrCat("chmod o+x ", p.string()));
    }
    if (p == p.root_path()) break;
  }
  return absl::OkStatus();
}

std::string CommandLog(const std::string& dir) { return dir + "/commands.log"; }

absl::Status Initdb(const RunAs& as, const std::string& dir, const std::string& data) {
  return Run(AsServerUser(as, {PgBin("initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                               "--no-sync", "-E", "UTF8", "--locale=C", "--no-instructions",
                               // 1 MB WAL segments: copying the template moves 16 MB less.
                               "--wal-segsize=1"}),
             dir, CommandLog(dir));
}

// initdb takes ~1.2 s; a copy of its output ~0.1 s. The first server of a user and PostgreSQL
// build leaves a template data directory next to the test directories (under an flock) and
// later ones copy it. QSIGN_PG_NO_TEMPLATE=1 turns this off.
absl::Status MakeDataDir(const RunAs& as, const std::string& base, const std::string& dir,
                         const std::string& data) {
  if (std::getenv("QSIGN_PG_NO_TEMPLATE") != nullptr) return Initdb(as, dir, data);
  const std::string tmpl = absl::StrCat(base, "/qsign-pg-template-v2-", geteuid(), "-",
                                        absl::Hex(std::hash<std::string>()(kPgBinDir)));
  int lock_fd = open((tmpl + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock_fd < 0) return Initdb(as, dir, data);
  struct Unlock {
    int fd;
    ~Unlock() { close(fd); }  // Also releases the flock.
  } unlock{lock_fd};
  struct stat lock_st;
  if (fstat(lock_fd, &lock_st) != 0 || lock_st.st_uid != geteuid() ||
      flock(lock_fd, LOCK_EX) != 0) {
    return Initdb(as, dir, data);
  }

  struct stat st;
  bool exists = lstat(tmpl.c_str(), &st) == 0;
  bool usable = exists && S_ISDIR(st.st_mode) && st.st_uid == as.uid && (st.st_mode & 077) == 0 &&
                access((tmpl + "/PG_VERSION").c_str(), F_OK) == 0;
  if (!usable) {
    // Never touch a path someone else owns.
    if (exists && st.st_uid != as.uid && st.st_uid != geteuid()) return Initdb(as, dir, data);
    std::error_code ec;
    std::filesystem::remove_all(tmpl, ec);
    const std::string build = dir + "/template-build";
    if (absl::Status s = Initdb(as, dir, build); !s.ok()) return s;
    if (rename(build.c_str(), tmpl.c_str()) != 0) {
      return ErrnoError(absl::StrCat("rename ", build, " to ", tmpl));
    }
  }
  // cp -a keeps the owner (we are root, or the owner) and the 0700 mode postgres insists on.
  return Run({"cp", "-a", "--reflink=auto", tmpl, data}, dir, CommandLog(dir));
}

// Starts `sh` in its own session, reading a pipe whose only writer is this process. When this
// process exits, however it dies, the read sees EOF and the shell stops the server (SIGQUIT is
// PostgreSQL's immediate shutdown) and removes the directory.
absl::Status StartWatchdog(const std::string& dir, int* write_fd, pid_t* pid) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  std::vector<std::string> argv = {"/bin/sh", "-c", R"sh(
cat >/dev/null
d=$1
pid=$(head -n 1 "$d/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && grep -q postgres "/proc/$pid/cmdline" 2>/dev/null; then
  kill -QUIT "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
fi
rm -rf -- "$d"
)sh",
                                   "qsign-pg-watchdog", dir};
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addchdir_np(&actions, "/");
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own session: a Ctrl-C or a kill of the test's process group must not take it along.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  int rc = posix_spawn(pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[0]);
  if (rc != 0) {
    close(fds[1]);
    return absl::InternalError(absl::StrCat("cannot start the watchdog: ", std::strerror(rc)));
  }
  *write_fd = fds[1];
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PgServer>> PgServer::Start() {
  std::string path = BaseDir() + "/qsign-pg-XXXXXX";
  if (mkdtemp(path.data()) == nullptr) return ErrnoError(absl::StrCat("mkdtemp ", path));
  std::unique_ptr<PgServer> server(new PgServer(path));
  // On failure the destructor stops whatever started and removes the directory.
  if (absl::Status st = server->Init(); !st.ok()) return st;
  return server;
}

absl::Status PgServer::Init() {
  absl::StatusOr<RunAs> as = ServerUser();
  if (!as.ok()) return as.status();
  if (as->via_runuser) {
    if (chown(dir_.c_str(), as->uid, as->gid) != 0) return ErrnoError(absl::StrCat("chown ", dir_));
    if (absl::Status st = MakeAncestorsTraversable(dir_); !st.ok()) return st;
  }
  const std::string data = dir_ + "/data";
  if (absl::Status st = StartWatchdog(dir_, &watchdog_fd_, &watchdog_pid_); !st.ok()) return st;
  if (absl::Status st = MakeDataDir(*as, BaseDir(), dir_, data); !st.ok()) return st;
  return StartPostgres();
}

absl::Status PgServer::StartPostgres() {
  absl::StatusOr<RunAs> as = ServerUser();
  if (!as.ok()) return as.status();
  // postgres itself rather than pg_ctl, whose readiness and shutdown polls sleep 100 ms a turn.
  const std::string log = dir_ + "/postgres.log";
  std::vector<std::string> args = {PgBin("postgres"),  "-D", dir_ + "/data", "-k", dir_, "-p",
                                   absl::StrCat(kPort)};
  for (const char* setting :
       {"listen_addresses=", "fsync=off", "synchronous_commit=off", "full_page_writes=off",
        "max_connections=200", "deadlock_timeout=100ms"}) {
    args.push_back("-c");
    args.push_back(setting);
  }
  // Extra settings for a profiling run (bench_login --pg_stat_statements), never for tests.
  if (const char* extra = std::getenv("QSIGN_PG_SETTINGS"); extra != nullptr) {
    for (absl::string_view setting : absl::StrSplit(extra, ' ', absl::SkipEmpty())) {
      args.push_back("-c");
      args.push_back(std::string(setting));
    }
  }
  absl::StatusOr<pid_t> pid = Spawn(AsServerUser(*as, std::move(args)), dir_, log);
  if (!pid.ok()) return pid.status();
  server_pid_ = *pid;

  const std::string admin = AdminConninfo();
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (PQping(admin.c_str()) != PQPING_OK) {
    int wstatus;
    if (waitpid(server_pid_, &wstatus, WNOHANG) == server_pid_) {
      server_pid_ = -1;
      return absl::InternalError(absl::StrCat("postgres exited during start-up (wait status ",
                                              wstatus, "):\n", Tail(log)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("postgres not ready after 60 s:\n", Tail(log)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return absl::OkStatus();
}

absl::Status PgServer::StopPostgres(int signal, absl::Duration patience) {
  if (server_pid_ <= 0) return absl::OkStatus();
  // As root server_pid_ is runuser, which exits with its child.
  const pid_t postmaster = PostmasterPid(dir_ + "/data");
  const pid_t target = postmaster > 0 ? postmaster : server_pid_;
  kill(target, signal);
  const absl::Time deadline = absl::Now() + patience;
  bool killed = false;
  for (;;) {
    pid_t r = waitpid(server_pid_, nullptr, WNOHANG);
    if (r == server_pid_ || (r < 0 && errno != EINTR)) break;
    if (!killed && absl::Now() > deadline) {
      kill(target, SIGKILL);
      killed = true;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  server_pid_ = -1;
  if (killed) {
    return absl::DeadlineExceededError(absl::StrCat("postgres did not stop within ",
                                                    absl::FormatDuration(patience), "; killed:\n",
                                                    Tail(dir_ + "/postgres.log")));
  }
  return absl::OkStatus();
}

absl::Status PgServer::Stop() {
  // SIGINT is PostgreSQL's fast shutdown: sessions end, a shutdown checkpoint keeps the data.
  return StopPostgres(SIGINT, absl::Seconds(30));
}

namespace {

// The processes whose parent is `parent` (/proc/<pid>/stat).
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = '?';
    long ppid = -1;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) != 2) continue;
    if (ppid == parent) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// Alive: exists and is not a zombie.
bool Alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

}  // namespace

absl::Status PgServer::Kill() {
  if (server_pid_ <= 0) return absl::OkStatus();
  const pid_t postmaster = PostmasterPid(dir_ + "/data");
  std::vector<pid_t> victims;
  if (postmaster > 0) {
    victims = ChildrenOf(postmaster);
    victims.push_back(postmaster);
  }
  victims.push_back(server_pid_);
  for (pid_t pid : victims) kill(pid, SIGKILL);
  while (waitpid(server_pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  server_pid_ = -1;
  // Orphaned server processes keep the shared memory block until they are gone, and a new
  // postmaster refuses to start while it is attached.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (pid_t pid : victims) {
    while (Alive(pid)) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat("postgres process ", pid, " survived"));
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
  }
  return absl::OkStatus();
}

absl::Status PgServer::Restart() {
  if (server_pid_ > 0) return absl::FailedPreconditionError("postgres is running; Stop it first");
  // A postmaster killed with SIGKILL under runuser is reparented, and stays a zombie until its new
  // parent reaps it; a new postmaster takes the lock file for a live server meanwhile ("another
  // postmaster running"). It is dead: its lock files go, the data directory's and the socket's
  // (the socket's names the zombie too: "lock file .s.PGSQL.5432.lock already exists").
  const std::string data = dir_ + "/data";
  if (const pid_t old = PostmasterPid(data); old > 0 && !Alive(old)) {
    std::error_code ignored;
    std::filesystem::remove(data + "/postmaster.pid", ignored);
    std::filesystem::remove(absl::StrCat(dir_, "/.s.PGSQL.", kPort, ".lock"), ignored);
  }
  return StartPostgres();
}

PgServer::~PgServer() {
  // Immediate shutdown: the directory goes away anyway.
  StopPostgres(SIGQUIT, absl::Seconds(10)).IgnoreError();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (watchdog_pid_ > 0) {
    kill(watchdog_pid_, SIGKILL);  // Its cat sees EOF below and exits.
    if (watchdog_fd_ >= 0) close(watchdog_fd_);
    while (waitpid(watchdog_pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  } else if (watchdog_fd_ >= 0) {
    close(watchdog_fd_);
  }
}

std::string PgServer::Conninfo(const std::string& dbname) const {
  return absl::StrCat("host=", dir_, " port=", kPort, " dbname=", dbname, " user=postgres");
}

std::string PgServer::AdminConninfo() const { return Conninfo("postgres"); }

absl::StatusOr<PgServer::Database> PgServer::CreateDatabase() {
  int n;
  {
    absl::MutexLock lock(&mu_);
    n = ++next_database_;
  }
  Database db;
  db.name = absl::StrCat("test_", n);
  db.conninfo = Conninfo(db.name);
  absl::StatusOr<std::unique_ptr<Connection>> admin = Connection::Open(AdminConninfo());
  if (!admin.ok()) return admin.status();
  if (absl::Status st = (*admin)->ExecScript(absl::StrCat("CREATE DATABASE ", db.name)); !st.ok()) {
    return st;
  }
  return db;
}

}  // namespace qsign::db::testing
