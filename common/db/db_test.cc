// Against a real PostgreSQL started by PgServer.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/db/audit.h"
#include "common/db/journal.h"
#include "common/db/migrate.h"
#include "common/db/pg.h"
#include "common/db/testing/pg_test.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsign::db {
namespace {

using ::testing::HasSubstr;

#define ASSERT_OK(expr)                            \
  do {                                             \
    absl::Status _st = (expr);                     \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st; \
  } while (0)

#define ASSERT_OK_AND_ASSIGN(lhs, expr)                               \
  auto _so_##lhs = (expr);                                            \
  ASSERT_TRUE(_so_##lhs.ok()) << #expr << ": " << _so_##lhs.status(); \
  auto lhs = *std::move(_so_##lhs)

TEST(SqlstateToStatusTest, MapsClasses) {
  struct Case {
    const char* sqlstate;
    absl::StatusCode code;
  } cases[] = {
      {"23505", absl::StatusCode::kAlreadyExists},
      {"23503", absl::StatusCode::kFailedPrecondition},
      {"23514", absl::StatusCode::kFailedPrecondition},
      {"23502", absl::StatusCode::kFailedPrecondition},
      {"40001", absl::StatusCode::kAborted},
      {"40P01", absl::StatusCode::kAborted},
      {"55P03", absl::StatusCode::kAborted},
      {"08006", absl::StatusCode::kUnavailable},
      {"08001", absl::StatusCode::kUnavailable},
      {"57P01", absl::StatusCode::kUnavailable},
      {"57P03", absl::StatusCode::kUnavailable},
      {"57014", absl::StatusCode::kDeadlineExceeded},
      {"53300", absl::StatusCode::kResourceExhausted},
      {"53100", absl::StatusCode::kResourceExhausted},
      {"22012", absl::StatusCode::kInvalidArgument},
      {"22P02", absl::StatusCode::kInvalidArgument},
      {"42601", absl::StatusCode::kInternal},
      {"42P01", absl::StatusCode::kInternal},
      {"XX000", absl::StatusCode::kInternal},
      {"P0001", absl::StatusCode::kInternal},
  };
  for (const Case& c : cases) {
    absl::Status st = SqlstateToStatus(c.sqlstate, "boom");
    EXPECT_EQ(st.code(), c.code) << c.sqlstate;
    EXPECT_THAT(st.message(), HasSubstr("boom")) << c.sqlstate;
    EXPECT_THAT(st.message(), HasSubstr(c.sqlstate));
  }
}

TEST(ValidateIdentifierTest, AcceptsOnlyPlainLowercaseNames) {
  EXPECT_TRUE(ValidateIdentifier("signer").ok());
  EXPECT_TRUE(ValidateIdentifier("_x9").ok());
  for (const char* bad : {"", "Signer", "9x", "a-b", "a b", "a;drop", "pg_catalog", "\"x\""}) {
    EXPECT_EQ(ValidateIdentifier(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateIdentifier(std::string(64, 'a')).ok());
}

TEST(PoolConfigTest, RejectsBadConfigAndUnreachableServer) {
  EXPECT_EQ(Pool::New({.conninfo = "host=/nonexistent", .size = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pool::New({.conninfo = "nonsense"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Pool::New({.conninfo = "host=/nonexistent-qsign dbname=x"}).status().code(),
            absl::StatusCode::kUnavailable);
}

class DbTest : public testing::PgTest {};

TEST_F(DbTest, ServerErrorsMapThroughSqlstate) {
  ASSERT_OK(pool()
                .Exec("CREATE TABLE accounts (id bigint PRIMARY KEY, email text UNIQUE, "
                      "age int CHECK (age >= 0))")
                .status());
  ASSERT_OK(pool()
                .Exec("INSERT INTO accounts VALUES ($1, $2, 30)",
                      {Param::Int(1), Param::Text("a@example.rs")})
                .status());

  absl::Status dup = pool()
                         .Exec("INSERT INTO accounts VALUES ($1, $2, 30)",
                               {Param::Int(2), Param::Text("a@example.rs")})
                         .status();
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;
  EXPECT_THAT(dup.message(), HasSubstr("23505"));
  EXPECT_THAT(dup.message(), HasSubstr("accounts_email_key"));
  // The DETAIL, which quotes the duplicate value, is not in the status.
  EXPECT_THAT(dup.message(), ::testing::Not(HasSubstr("a@example.rs")));

  EXPECT_EQ(pool().Exec("INSERT INTO accounts VALUES (3, 'b', -1)").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool().Exec("SELECT 1 / 0").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool().Exec("SELEC 1").status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(pool().Exec("SELECT * FROM missing_table").status().code(),
            absl::StatusCode::kInternal);

  absl::Status timeout = pool().InTransaction([](Tx& tx) -> absl::Status {
    if (absl::Status st = tx.ExecScript("SET LOCAL statement_timeout = '50ms'"); !st.ok()) {
      return st;
    }
    return tx.Exec("SELECT pg_sleep(5)").status();
  });
  EXPECT_EQ(timeout.code(), absl::StatusCode::kDeadlineExceeded) << timeout;
}

TEST_F(DbTest, ParamsRoundTrip) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  bytes += std::string("\0\0tail\0", 7);
  const absl::Time t = absl::FromUnixMicros(1700000000123456);
  const absl::Time before_epoch = absl::FromUnixMicros(-86400LL * 365 * 1000000 - 7);

  ASSERT_OK_AND_ASSIGN(
      r, pool().Exec("SELECT $1::text, $2, $3, $4, $5, $6::text, $7, $8, $9, $10, $11",
                     {Param::Text("Ђорђе Šćepanović ✓"), Param::Bytes(bytes), Param::Int(-42),
                      Param::Bool(true), Param::Time(t), Param::Null(), Param::Bytes(""),
                      Param::Time(before_epoch), Param::Time(absl::InfiniteFuture()),
                      Param::Int(INT64_MAX), Param::Bool(false)}));
  ASSERT_EQ(r.rows(), 1);
  ASSERT_EQ(r.columns(), 11);
  EXPECT_EQ(r.Get(0, 0), "Ђорђе Šćepanović ✓");
  EXPECT_EQ(r.GetBytes(0, 1).value(), bytes);
  EXPECT_EQ(r.GetInt64(0, 2).value(), -42);
  EXPECT_TRUE(r.GetBool(0, 3).value());
  EXPECT_EQ(r.GetTime(0, 4).value(), t);
  EXPECT_TRUE(r.IsNull(0, 5));
  EXPECT_EQ(r.Get(0, 5), "");
  EXPECT_EQ(r.GetInt64(0, 5).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.GetBytes(0, 6).value(), "");
  EXPECT_EQ(r.GetTime(0, 7).value(), before_epoch);
  EXPECT_EQ(r.GetTime(0, 8).value(), absl::InfiniteFuture());
  EXPECT_EQ(r.GetInt64(0, 9).value(), INT64_MAX);
  EXPECT_FALSE(r.GetBool(0, 10).value());
  // Wrong-type reads are errors, not garbage.
  EXPECT_FALSE(r.GetBytes(0, 0).ok());
  EXPECT_FALSE(r.GetTime(0, 0).ok());
  EXPECT_FALSE(r.GetBool(0, 2).ok());

  // Through a table, and sub-microsecond parts truncated.
  ASSERT_OK(pool()
                .Exec("CREATE TABLE blobs (id bigint, data bytea, at timestamptz, "
                      "at_us bigint)")
                .status());
  const absl::Time fine = t + absl::Nanoseconds(999);
  ASSERT_OK(pool()
                .Exec("INSERT INTO blobs VALUES ($1, $2, $3, $4)",
                      {Param::Int(1), Param::Bytes(bytes), Param::Time(fine),
                       Param::Int(absl::ToUnixMicros(t))})
                .status());
  ASSERT_OK_AND_ASSIGN(
      back, pool().Exec("SELECT data, at, at_us FROM blobs WHERE id = $1", {Param::Int(1)}));
  ASSERT_EQ(back.rows(), 1);
  EXPECT_EQ(back.GetBytes(0, 0).value(), bytes);
  EXPECT_EQ(back.GetTime(0, 1).value(), t);
  EXPECT_EQ(back.GetTime(0, 2).value(), t);

  // Text parameters cannot carry NUL (libpq would cut them short): refused up front.
  EXPECT_EQ(pool().Exec("SELECT $1::text", {Param::Text(std::string("a\0b", 3))}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DbTest, TransactionRollsBackOnError) {
  ASSERT_OK(pool().Exec("CREATE TABLE items (id bigint PRIMARY KEY)").status());

  absl::Status st = pool().InTransaction([](Tx& tx) -> absl::Status {
    if (absl::Status s = tx.Exec("INSERT INTO items VALUES (1)").status(); !s.ok()) return s;
    return absl::FailedPreconditionError("changed my mind");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);

  // A database error the function ignores still rolls back, and is what the caller sees.
  st = pool().InTransaction([](Tx& tx) -> absl::Status {
    tx.Exec("INSERT INTO items VALUES (2)").status().IgnoreError();
    tx.Exec("INSERT INTO items VALUES (2)").status().IgnoreError();
    return absl::OkStatus();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;

  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT count(*) FROM items"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 0);

  ASSERT_OK(pool().InTransaction(
      [](Tx& tx) -> absl::Status { return tx.Exec("INSERT INTO items VALUES (3)").status(); }));
  ASSERT_OK_AND_ASSIGN(r2, pool().Exec("SELECT id FROM items"));
  ASSERT_EQ(r2.rows(), 1);
  EXPECT_EQ(r2.GetInt64(0, 0).value(), 3);
  EXPECT_EQ(pool().Stats().in_use, 0);
}

TEST_F(DbTest, SerializationFailureIsRetried) {
  // Write skew: each transaction reads the total and inserts; under SERIALIZABLE one of the two
  // overlapping first attempts must fail with 40001 and run again.
  ASSERT_OK(pool().Exec("CREATE TABLE shifts (doctor text, on_call bool)").status());
  ASSERT_OK(pool().Exec("INSERT INTO shifts VALUES ('a', true), ('b', true)").status());

  absl::Barrier* both_read = new absl::Barrier(2);
  std::atomic<int> attempts{0};
  std::vector<absl::Status> results(2);
  auto go_off_call = [&](int i, const char* doctor) {
    bool first = true;
    results[i] = pool().InTransaction(
        [&](Tx& tx) -> absl::Status {
          ++attempts;
          absl::StatusOr<Result> r = tx.Exec("SELECT count(*) FROM shifts WHERE on_call");
          if (!r.ok()) return r.status();
          if (first) {
            first = false;
            if (both_read->Block()) delete both_read;
          }
          if (r->GetInt64(0, 0).value() < 2) return absl::OkStatus();  // Someone must stay.
          return tx
              .Exec("UPDATE shifts SET on_call = false WHERE doctor = $1", {Param::Text(doctor)})
              .status();
        },
        {.isolation = Isolation::kSerializable});
  };
  std::thread t1(go_off_call, 0, "a");
  std::thread t2(go_off_call, 1, "b");
  t1.join();
  t2.join();
  ASSERT_OK(results[0]);
  ASSERT_OK(results[1]);
  EXPECT_GE(attempts.load(), 3);
  EXPECT_GE(pool().Stats().retries, 1);
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT count(*) FROM shifts WHERE on_call"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 1);
}

TEST_F(DbTest, DeadlockIsRetried) {
  ASSERT_OK(pool().Exec("CREATE TABLE counters (id int PRIMARY KEY, n int)").status());
  ASSERT_OK(pool().Exec("INSERT INTO counters VALUES (1, 0), (2, 0)").status());
  absl::Barrier* both_locked = new absl::Barrier(2);
  std::atomic<int> attempts{0};
  std::vector<absl::Status> results(2);
  auto bump = [&](int i, int first_id, int second_id) {
    bool first = true;
    results[i] = pool().InTransaction([&](Tx& tx) -> absl::Status {
      ++attempts;
      const char* sql = "UPDATE counters SET n = n + 1 WHERE id = $1";
      if (absl::Status s = tx.Exec(sql, {Param::Int(first_id)}).status(); !s.ok()) return s;
      if (first) {
        first = false;
        if (both_locked->Block()) delete both_locked;
      }
      return tx.Exec(sql, {Param::Int(second_id)}).status();
    });
  };
  std::thread t1(bump, 0, 1, 2);
  std::thread t2(bump, 1, 2, 1);
  t1.join();
  t2.join();
  ASSERT_OK(results[0]);
  ASSERT_OK(results[1]);
  EXPECT_GE(attempts.load(), 3);
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT sum(n) FROM counters"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 4);
}

TEST_F(DbTest, RetriesStopAfterMaxRetries) {
  int calls = 0;
  absl::Status st = pool().InTransaction(
      [&](Tx&) -> absl::Status {
        ++calls;
        return absl::AbortedError("always conflicting");
      },
      {.max_retries = 3});
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(calls, 4);

  calls = 0;
  st = pool().InTransaction([&](Tx&) -> absl::Status {
    ++calls;
    return absl::NotFoundError("no such thing");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(calls, 1);
}

TEST_F(DbTest, PoolServesSixteenThreads) {
  ASSERT_OK(pool().Exec("CREATE TABLE hits (id int PRIMARY KEY, n bigint NOT NULL)").status());
  ASSERT_OK(pool().Exec("INSERT INTO hits VALUES (1, 0)").status());
  ASSERT_OK(pool().Exec("CREATE TABLE log (thread int, i int)").status());
  constexpr int kThreads = 16;
  constexpr int kIterations = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        absl::Status st = pool().InTransaction([&](Tx& tx) -> absl::Status {
          if (absl::Status s = tx.Exec("UPDATE hits SET n = n + 1 WHERE id = 1").status();
              !s.ok()) {
            return s;
          }
          return tx.Exec("INSERT INTO log VALUES ($1, $2)", {Param::Int(t), Param::Int(i)})
              .status();
        });
        if (!st.ok()) ++failures;
        if (!pool().Exec("SELECT n FROM hits WHERE id = $1", {Param::Int(1)}).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT n, (SELECT count(*) FROM log) FROM hits"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), kThreads * kIterations);
  EXPECT_EQ(r.GetInt64(0, 1).value(), kThreads * kIterations);
  PoolStats stats = pool().Stats();
  EXPECT_EQ(stats.size, 8);
  EXPECT_LE(stats.open, 8);
  EXPECT_EQ(stats.in_use, 0);
}

TEST_F(DbTest, AcquireTimesOutWhenPoolIsExhausted) {
  ASSERT_OK_AND_ASSIGN(small, Pool::New({.conninfo = database().conninfo,
                                         .size = 1,
                                         .acquire_timeout = absl::Milliseconds(100)}));
  absl::Notification holding, release;
  std::thread holder([&] {
    small
        ->InTransaction([&](Tx&) -> absl::Status {
          holding.Notify();
          release.WaitForNotification();
          return absl::OkStatus();
        })
        .IgnoreError();
  });
  holding.WaitForNotification();
  EXPECT_EQ(small->Stats().in_use, 1);
  absl::Status st = small->Exec("SELECT 1").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted) << st;
  EXPECT_EQ(small->Stats().acquire_timeouts, 1);
  release.Notify();
  holder.join();
  ASSERT_OK(small->Exec("SELECT 1").status());
}

TEST_F(DbTest, ConnectionKilledByServerIsReplaced) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK_AND_ASSIGN(pid, single->Exec("SELECT pg_backend_pid()"));
  // Terminate it from another connection and wait until the backend is gone.
  ASSERT_OK_AND_ASSIGN(killed, pool().Exec("SELECT pg_terminate_backend($1::int, 5000)",
                                           {Param::Int(pid.GetInt64(0, 0).value())}));
  ASSERT_TRUE(killed.GetBool(0, 0).value());
  ASSERT_OK_AND_ASSIGN(again, single->Exec("SELECT pg_backend_pid()"));
  EXPECT_NE(again.Get(0, 0), pid.Get(0, 0));
  EXPECT_EQ(single->Stats().open, 1);
}

// ---- outages: PgServer::Stop / Restart ----

TEST(PgServerTest, StopKeepsDataAndRestartServesItOnTheSameSocket) {
  ASSERT_OK_AND_ASSIGN(server, testing::PgServer::Start());
  ASSERT_OK_AND_ASSIGN(db, server->CreateDatabase());
  {
    ASSERT_OK_AND_ASSIGN(conn, Connection::Open(db.conninfo));
    ASSERT_OK(conn->ExecScript("CREATE TABLE kept (id int PRIMARY KEY, v text NOT NULL)"));
    ASSERT_OK(conn->Exec("INSERT INTO kept SELECT g, 'row ' || g FROM generate_series(1, 100) g")
                  .status());
  }
  EXPECT_EQ(server->Restart().code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_OK(server->Stop());
  EXPECT_FALSE(server->running());
  ASSERT_OK(server->Stop());  // Already stopped: nothing to do.
  EXPECT_EQ(Connection::Open(db.conninfo).status().code(), absl::StatusCode::kUnavailable);

  ASSERT_OK(server->Restart());
  EXPECT_TRUE(server->running());
  ASSERT_OK_AND_ASSIGN(conn, Connection::Open(db.conninfo));
  ASSERT_OK_AND_ASSIGN(r, conn->Exec("SELECT count(*), max(v) FROM kept"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 100);
  EXPECT_EQ(r.Get(0, 1), "row 99");
  // And it takes new databases and writes as before.
  ASSERT_OK_AND_ASSIGN(other, server->CreateDatabase());
  ASSERT_OK(Connection::Open(other.conninfo).status());
}

// The process that started the server dies without its destructor after a Restart: the
// watchdog still stops the restarted postmaster and removes the directory.
TEST(PgServerTest, WatchdogStopsARestartedServer) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    auto server = testing::PgServer::Start();
    if (!server.ok() || !(*server)->Stop().ok() || !(*server)->Restart().ok()) _exit(1);
    std::ifstream pidfile((*server)->dir() + "/data/postmaster.pid");
    std::string pid;
    std::getline(pidfile, pid);
    std::string out = (*server)->dir() + "\n" + pid + "\n";
    if (write(fds[1], out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(1);
    _exit(0);  // No destructor: the unique_ptr is leaked on purpose.
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, n);
  close(fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  int postmaster = 0;
  ASSERT_TRUE(absl::SimpleAtoi(lines[1], &postmaster)) << out;
  ASSERT_GT(postmaster, 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((kill(postmaster, 0) == 0 || access(lines[0].c_str(), F_OK) == 0) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_NE(kill(postmaster, 0), 0) << "postmaster " << postmaster << " still running";
  EXPECT_NE(access(lines[0].c_str(), F_OK), 0) << lines[0] << " still there";
}

// Every pooled connection dies with the server. While it is down calls fail fast with
// UNAVAILABLE; once it is back each dead connection is noticed at checkout and replaced, so no
// caller sees a stale one (no retries needed either).
TEST(PgServerTest, PoolRecoversAfterServerRestart) {
  ASSERT_OK_AND_ASSIGN(server, testing::PgServer::Start());
  ASSERT_OK_AND_ASSIGN(db, server->CreateDatabase());
  constexpr int kSize = 4;
  ASSERT_OK_AND_ASSIGN(pool, Pool::New({.conninfo = db.conninfo, .size = kSize}));
  ASSERT_OK(pool->Exec("CREATE TABLE t (n int)").status());
  // All kSize connections checked out at once, so that all of them are open (and then idle).
  auto use_every_connection = [&](int n) -> absl::Status {
    absl::Mutex mu;
    int arrived = 0;
    auto all_in = [&] { return arrived >= kSize; };
    std::vector<absl::Status> results(kSize);
    std::vector<std::thread> threads;
    for (int i = 0; i < kSize; ++i) {
      threads.emplace_back([&, i] {
        results[i] = pool->InTransaction([&](Tx& tx) -> absl::Status {
          {
            absl::MutexLock lock(&mu);
            ++arrived;
            mu.AwaitWithTimeout(absl::Condition(&all_in), absl::Seconds(20));
          }
          return tx.Exec("INSERT INTO t VALUES ($1)", {Param::Int(n)}).status();
        });
      });
    }
    for (std::thread& t : threads) t.join();
    for (const absl::Status& st : results) {
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  };
  ASSERT_OK(use_every_connection(1));
  EXPECT_EQ(pool->Stats().open, kSize);

  ASSERT_OK(server->Stop());
  const absl::Time before = absl::Now();
  absl::Status down = pool->Exec("SELECT 1").status();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;
  EXPECT_EQ(pool->InTransaction([](Tx&) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - before, absl::Seconds(5)) << "calls must fail, not wait for the server";
  EXPECT_EQ(pool->Stats().in_use, 0);

  ASSERT_OK(server->Restart());
  const int64_t retries = pool->Stats().retries;
  ASSERT_OK(use_every_connection(2));
  EXPECT_EQ(pool->Stats().retries, retries) << "a dead connection reached a caller";
  EXPECT_EQ(pool->Stats().open, kSize);
  ASSERT_OK_AND_ASSIGN(r, pool->Exec("SELECT count(*) FILTER (WHERE n = 1), "
                                     "count(*) FILTER (WHERE n = 2) FROM t"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), kSize);
  EXPECT_EQ(r.GetInt64(0, 1).value(), kSize);
}

TEST_F(DbTest, TransactionWhoseConnectionDiesBeforeCommitIsRetried) {
  ASSERT_OK(pool().Exec("CREATE TABLE notes (attempt int)").status());
  int attempts = 0;
  ASSERT_OK(pool().InTransaction([&](Tx& tx) -> absl::Status {
    ++attempts;
    if (absl::Status s = tx.Exec("INSERT INTO notes VALUES ($1)", {Param::Int(attempts)}).status();
        !s.ok()) {
      return s;
    }
    if (attempts == 1) {
      // The server ends this session: the transaction is rolled back, nothing was committed.
      return tx.Exec("SELECT pg_terminate_backend(pg_backend_pid())").status();
    }
    return absl::OkStatus();
  }));
  EXPECT_EQ(attempts, 2);
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT attempt FROM notes"));
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(r.GetInt64(0, 0).value(), 2);
}

TEST_F(DbTest, CachedStatementSurvivesSchemaChange) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK(single->Exec("CREATE TABLE things (a int)").status());
  ASSERT_OK(single->Exec("INSERT INTO things VALUES (1)").status());
  ASSERT_OK_AND_ASSIGN(before, single->Exec("SELECT * FROM things"));
  EXPECT_EQ(before.columns(), 1);
  ASSERT_OK(pool().Exec("ALTER TABLE things ADD COLUMN b int DEFAULT 7").status());
  ASSERT_OK_AND_ASSIGN(after, single->Exec("SELECT * FROM things"));
  EXPECT_EQ(after.columns(), 2);
  EXPECT_EQ(after.GetInt64(0, 1).value(), 7);
}

// BEGIN travels with the first statement: BEGIN; statement; COMMIT is two round trips.
TEST_F(DbTest, TransactionOfOneStatementIsTwoRoundTrips) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK(single->Exec("CREATE TABLE counts (n bigint)").status());
  auto insert = [&](int64_t n) {
    return single->InTransaction([&](Tx& tx) -> absl::Status {
      return tx.Exec("INSERT INTO counts VALUES ($1)", {Param::Int(n)}).status();
    });
  };
  ASSERT_OK(insert(1));  // Prepares the statement on this connection.
  const int64_t before = single->Stats().round_trips;
  ASSERT_OK(insert(2));
  EXPECT_EQ(single->Stats().round_trips - before, 2);
  // A transaction that ran nothing costs nothing.
  ASSERT_OK(single->InTransaction([](Tx&) { return absl::OkStatus(); }));
  EXPECT_EQ(single->Stats().round_trips - before, 2);
  ASSERT_OK_AND_ASSIGN(r, single->Exec("SELECT count(*), sum(n) FROM counts"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 2);
  EXPECT_EQ(r.GetInt64(0, 1).value(), 3);
}

// The first statement fails inside the pipeline with BEGIN: rolled back, the right code, and the
// connection serves the next transaction.
TEST_F(DbTest, FirstStatementErrorInPipelineRollsBack) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK(single->Exec("CREATE TABLE keys (id bigint PRIMARY KEY)").status());
  ASSERT_OK(single->Exec("INSERT INTO keys VALUES (1)").status());
  for (int i = 0; i < 2; ++i) {  // Unprepared, then prepared.
    absl::Status st = single->InTransaction([](Tx& tx) -> absl::Status {
      return tx.Exec("INSERT INTO keys VALUES ($1)", {Param::Int(1)}).status();
    });
    EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  }
  // An error the server finds while parsing the first statement.
  absl::Status syntax = single->InTransaction(
      [](Tx& tx) -> absl::Status { return tx.Exec("INSERT INTO nowhere VALUES (1)").status(); });
  EXPECT_EQ(syntax.code(), absl::StatusCode::kInternal) << syntax;
  // A script as the first thing in a transaction carries BEGIN too, and rolls back with it.
  absl::Status script = single->InTransaction(
      [](Tx& tx) -> absl::Status {
        if (absl::Status s = tx.ExecScript("INSERT INTO keys VALUES (7)"); !s.ok()) return s;
        return absl::AbortedError("no");
      },
      {.max_retries = 0});
  EXPECT_EQ(script.code(), absl::StatusCode::kAborted);
  ASSERT_OK(single->InTransaction([](Tx& tx) -> absl::Status {
    return tx.Exec("INSERT INTO keys VALUES ($1)", {Param::Int(2)}).status();
  }));
  ASSERT_OK_AND_ASSIGN(r, single->Exec("SELECT string_agg(id::text, ',' ORDER BY id) FROM keys"));
  EXPECT_EQ(r.Get(0, 0), "1,2");
  EXPECT_EQ(single->Stats().open, 1);
}

// ExecAndCommit sends the transaction's last statement with COMMIT: BEGIN; statement;
// statement + COMMIT is two round trips (three with a separate COMMIT), a transaction of one
// statement one, and what it wrote is there for everyone.
TEST_F(DbTest, ExecAndCommitSendsTheLastStatementWithCommit) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK(single->Exec("CREATE TABLE counts (n bigint)").status());
  auto two = [&](int64_t n) {
    return single->InTransaction([&](Tx& tx) -> absl::Status {
      if (auto r = tx.Exec("INSERT INTO counts VALUES ($1)", {Param::Int(n)}); !r.ok()) {
        return r.status();
      }
      auto last =
          tx.ExecAndCommit("INSERT INTO counts VALUES ($1) RETURNING n * 10", {Param::Int(n + 1)});
      if (!last.ok()) return last.status();
      EXPECT_EQ(last->GetInt64(0, 0).value(), (n + 1) * 10);  // Its result comes back.
      return absl::OkStatus();
    });
  };
  auto one = [&](int64_t n) {
    return single->InTransaction([&](Tx& tx) -> absl::Status {
      return tx.ExecAndCommit("INSERT INTO counts VALUES ($1)", {Param::Int(n)}).status();
    });
  };
  ASSERT_OK(two(1));  // Prepares the statements on this connection.
  int64_t before = single->Stats().round_trips;
  ASSERT_OK(two(3));
  EXPECT_EQ(single->Stats().round_trips - before, 2);
  before = single->Stats().round_trips;
  ASSERT_OK(one(5));
  EXPECT_EQ(single->Stats().round_trips - before, 1);
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT string_agg(n::text, ',' ORDER BY n) FROM counts"));
  EXPECT_EQ(r.Get(0, 0), "1,2,3,4,5");
  EXPECT_EQ(single->Stats().open, 1);
}

// A statement that fails in the pipeline before COMMIT: the server skips the COMMIT, the whole
// transaction rolls back (what ran before it too), the statement's own error comes back, nothing
// is retried unless ABORTED, and the connection serves the next transaction.
TEST_F(DbTest, AStatementFailingBeforeItsCommitRollsBackEverything) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK(single->Exec("CREATE TABLE keys (id bigint PRIMARY KEY)").status());
  ASSERT_OK(single->Exec("INSERT INTO keys VALUES (1)").status());
  ASSERT_OK(single->Exec("CREATE TABLE log (what text)").status());
  int runs = 0;
  for (int i = 0; i < 2; ++i) {  // Unprepared, then prepared.
    absl::Status st = single->InTransaction([&](Tx& tx) -> absl::Status {
      ++runs;
      if (auto r = tx.Exec("INSERT INTO log VALUES ($1)", {Param::Text("half")}); !r.ok()) {
        return r.status();
      }
      return tx.ExecAndCommit("INSERT INTO keys VALUES ($1)", {Param::Int(1)}).status();
    });
    EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  }
  EXPECT_EQ(runs, 2);
  // A statement that raises by itself (as the approval does when its request moved), also as the
  // transaction's only statement (BEGIN, it and COMMIT in one pipeline).
  for (bool first : {false, true}) {
    absl::Status st = single->InTransaction([&](Tx& tx) -> absl::Status {
      if (!first) {
        if (auto r = tx.Exec("INSERT INTO log VALUES ('half')"); !r.ok()) return r.status();
      }
      return tx
          .ExecAndCommit(
              "WITH w AS (INSERT INTO keys VALUES ($1) RETURNING id) "
              "SELECT CASE WHEN (SELECT count(*) FROM w) = 2 THEN 1 ELSE 1 / 0 END",
              {Param::Int(9)})
          .status();
    });
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(st.message(), HasSubstr("division by zero"));
  }
  // A serialization failure (ABORTED) in the last statement rolls back and runs fn again.
  ASSERT_OK(single
                ->Exec("CREATE FUNCTION abort_if(yes boolean) RETURNS int LANGUAGE plpgsql AS $$ "
                       "BEGIN IF yes THEN RAISE EXCEPTION 'try again' USING ERRCODE = "
                       "'serialization_failure'; END IF; RETURN 1; END $$")
                .status());
  int attempts = 0;
  ASSERT_OK(single->InTransaction([&](Tx& tx) -> absl::Status {
    ++attempts;
    if (auto r = tx.Exec("INSERT INTO log VALUES ('retried')"); !r.ok()) return r.status();
    return tx.ExecAndCommit("SELECT abort_if($1)", {Param::Bool(attempts == 1)}).status();
  }));
  EXPECT_EQ(attempts, 2);
  ASSERT_OK_AND_ASSIGN(keys, pool().Exec("SELECT string_agg(id::text, ',' ORDER BY id) FROM keys"));
  EXPECT_EQ(keys.Get(0, 0), "1");
  ASSERT_OK_AND_ASSIGN(log, pool().Exec("SELECT string_agg(what, ',') FROM log"));
  EXPECT_EQ(log.Get(0, 0), "retried") << "nothing half-written";
  ASSERT_OK(single->InTransaction([](Tx& tx) -> absl::Status {
    return tx.ExecAndCommit("INSERT INTO keys VALUES ($1)", {Param::Int(3)}).status();
  }));
  EXPECT_EQ(single->Stats().open, 1);
}

// A transaction that failed is never committed: fn swallowing an earlier error and then calling
// ExecAndCommit gets that error back, nothing is sent, nothing is written. After ExecAndCommit the
// transaction takes no statement; an error fn returns after it does not undo or repeat it.
TEST_F(DbTest, ACommitAfterAnErrorIsNotACommit) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK(single->Exec("CREATE TABLE keys (id bigint PRIMARY KEY)").status());
  // Prepares the statement on the connection.
  ASSERT_OK(single->Exec("INSERT INTO keys VALUES ($1)", {Param::Int(1)}).status());
  const int64_t before = single->Stats().round_trips;
  absl::Status st = single->InTransaction([&](Tx& tx) -> absl::Status {
    if (auto r = tx.Exec("INSERT INTO keys VALUES ($1)", {Param::Int(2)}); !r.ok()) {
      return r.status();
    }
    auto dup = tx.Exec("INSERT INTO keys VALUES ($1)", {Param::Int(1)});
    EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);
    // Swallowed (a bug in fn): the commit is refused with the first error.
    auto commit = tx.ExecAndCommit("INSERT INTO keys VALUES ($1)", {Param::Int(3)});
    EXPECT_EQ(commit.status().code(), absl::StatusCode::kAlreadyExists) << commit.status();
    return absl::OkStatus();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists) << st;
  // BEGIN with the first insert, the second, ROLLBACK: the COMMIT's pipeline never went out.
  EXPECT_EQ(single->Stats().round_trips - before, 3);
  ASSERT_OK_AND_ASSIGN(keys, pool().Exec("SELECT string_agg(id::text, ',' ORDER BY id) FROM keys"));
  EXPECT_EQ(keys.Get(0, 0), "1");

  int runs = 0;
  st = single->InTransaction([&](Tx& tx) -> absl::Status {
    ++runs;
    auto r = tx.ExecAndCommit("INSERT INTO keys VALUES ($1)", {Param::Int(4)});
    if (!r.ok()) return r.status();
    auto after = tx.Exec("INSERT INTO keys VALUES ($1)", {Param::Int(5)});
    EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition) << after.status();
    return absl::AbortedError("fn's own error after its commit");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(runs, 1) << "a committed transaction is not run again";
  ASSERT_OK_AND_ASSIGN(now, pool().Exec("SELECT string_agg(id::text, ',' ORDER BY id) FROM keys"));
  EXPECT_EQ(now.Get(0, 0), "1,4");
  EXPECT_EQ(single->Stats().open, 1);
}

// The connection lost while the statement and its COMMIT are on their way: UNKNOWN (it may or may
// not have committed), never run again; the pool opens a new connection for the next call.
TEST_F(DbTest, ConnectionLostWithTheCommitIsUnknownAndNotRetried) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  ASSERT_OK(single->Exec("CREATE TABLE keys (id bigint PRIMARY KEY)").status());
  int runs = 0;
  absl::Status st = single->InTransaction([&](Tx& tx) -> absl::Status {
    ++runs;
    auto pid = tx.Exec("SELECT pg_backend_pid()");
    if (!pid.ok()) return pid.status();
    auto killed =
        pool().Exec("SELECT pg_terminate_backend($1::int, 5000)", {Param::Text(pid->Get(0, 0))});
    EXPECT_TRUE(killed.ok()) << killed.status();
    return tx.ExecAndCommit("INSERT INTO keys VALUES ($1)", {Param::Int(1)}).status();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kUnknown) << st;
  EXPECT_THAT(st.message(), HasSubstr("may or may not have committed"));
  EXPECT_EQ(runs, 1);
  ASSERT_OK(single->InTransaction([](Tx& tx) -> absl::Status {
    return tx.ExecAndCommit("INSERT INTO keys VALUES ($1)", {Param::Int(2)}).status();
  }));
  ASSERT_OK_AND_ASSIGN(keys, pool().Exec("SELECT string_agg(id::text, ',' ORDER BY id) FROM keys"));
  EXPECT_EQ(keys.Get(0, 0), "2");
}

TEST_F(DbTest, LockTimeoutEndsAWaitAndStaysInItsTransaction) {
  ASSERT_OK(pool().Exec("CREATE TABLE slots (id bigint PRIMARY KEY, v bigint)").status());
  ASSERT_OK(pool().Exec("INSERT INTO slots VALUES (1, 0)").status());
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  absl::Notification locked, release;
  std::thread holder([&] {
    ASSERT_OK(pool().InTransaction([&](Tx& tx) -> absl::Status {
      auto r = tx.Exec("SELECT v FROM slots WHERE id = 1 FOR UPDATE");
      locked.Notify();
      release.WaitForNotification();
      return r.status();
    }));
  });
  locked.WaitForNotification();
  const absl::Time start = absl::Now();
  absl::Status st = single->InTransaction(
      [](Tx& tx) -> absl::Status {
        return tx.Exec("UPDATE slots SET v = v + 1 WHERE id = 1").status();
      },
      {.max_retries = 0, .lock_timeout = absl::Milliseconds(200)});
  const absl::Duration waited = absl::Now() - start;
  release.Notify();
  holder.join();
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted) << st;  // 55P03 lock_not_available
  EXPECT_GE(waited, absl::Milliseconds(150));
  EXPECT_LT(waited, absl::Seconds(5));
  // SET LOCAL: the next transaction on the same connection waits as long as it must.
  ASSERT_OK_AND_ASSIGN(shown, single->Exec("SHOW lock_timeout"));
  EXPECT_EQ(shown.Get(0, 0), "0");
  ASSERT_OK(single->InTransaction([](Tx& tx) -> absl::Status {
    return tx.Exec("UPDATE slots SET v = v + 1 WHERE id = 1").status();
  }));
}

// More $n placeholders than parameters: a clear INTERNAL error (a bug in our SQL), not a
// protocol violation reported as a lost connection; the connection stays usable.
TEST_F(DbTest, WrongParameterCountIsAClearError) {
  ASSERT_OK_AND_ASSIGN(single, Pool::New({.conninfo = database().conninfo, .size = 1}));
  for (int i = 0; i < 2; ++i) {  // Preparing, then from the cache.
    absl::Status st = single->Exec("SELECT $1::bigint + $2::bigint", {Param::Int(1)}).status();
    EXPECT_EQ(st.code(), absl::StatusCode::kInternal) << st;
    EXPECT_THAT(st.message(), HasSubstr("has 2 parameters ($1..$2), 1 given")) << st;
  }
  absl::Status in_tx = single->InTransaction([](Tx& tx) -> absl::Status {
    return tx.Exec("SELECT $1::bigint + $2::bigint", {Param::Int(1)}).status();
  });
  EXPECT_EQ(in_tx.code(), absl::StatusCode::kInternal) << in_tx;
  ASSERT_OK_AND_ASSIGN(
      r, single->Exec("SELECT $1::bigint + $2::bigint", {Param::Int(1), Param::Int(2)}));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 3);
  EXPECT_EQ(single->Stats().open, 1);
}

// ---- migrations ----

constexpr Migration kV1{1, "create widgets", "CREATE TABLE widgets (id bigint PRIMARY KEY);"};
constexpr Migration kV2{2, "widget names",
                        "ALTER TABLE widgets ADD COLUMN name text; "
                        "CREATE INDEX widgets_name ON widgets (name);"};
constexpr Migration kV3{3, "gadgets", "CREATE TABLE gadgets (id bigint PRIMARY KEY);"};

TEST_F(DbTest, MigrationsApplyOnceAndAreIdempotent) {
  const Migration two[] = {kV1, kV2};
  EXPECT_EQ(SchemaVersion(pool(), "shop").value(), 0);
  ASSERT_OK(ApplyMigrations(pool(), "shop", two));
  EXPECT_EQ(SchemaVersion(pool(), "shop").value(), 2);
  ASSERT_OK(pool().Exec("INSERT INTO shop.widgets VALUES (1, 'w')").status());
  ASSERT_OK_AND_ASSIGN(first, pool().Exec("SELECT version, name, applied_at FROM "
                                          "shop.schema_migrations ORDER BY version"));
  ASSERT_EQ(first.rows(), 2);
  EXPECT_EQ(first.Get(1, 1), "widget names");

  ASSERT_OK(ApplyMigrations(pool(), "shop", two));  // Nothing to do.
  ASSERT_OK_AND_ASSIGN(second, pool().Exec("SELECT version, name, applied_at FROM "
                                           "shop.schema_migrations ORDER BY version"));
  ASSERT_EQ(second.rows(), 2);
  EXPECT_EQ(second.Get(1, 2), first.Get(1, 2));

  const Migration three[] = {kV1, kV2, kV3};
  ASSERT_OK(ApplyMigrations(pool(), "shop", three));
  EXPECT_EQ(SchemaVersion(pool(), "shop").value(), 3);
  ASSERT_OK(pool().Exec("SELECT * FROM shop.gadgets").status());
  // The tables went into the schema, not into public.
  ASSERT_OK_AND_ASSIGN(public_tables,
                       pool().Exec("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"));
  EXPECT_EQ(public_tables.GetInt64(0, 0).value(), 0);
}

TEST_F(DbTest, MigrationsRefuseNewerDatabase) {
  const Migration three[] = {kV1, kV2, kV3};
  ASSERT_OK(ApplyMigrations(pool(), "shop", three));
  const Migration two[] = {kV1, kV2};
  absl::Status st = ApplyMigrations(pool(), "shop", two);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(st.message(), HasSubstr("newer"));

  const Migration renamed[] = {kV1, {2, "something else", kV2.sql}, kV3};
  st = ApplyMigrations(pool(), "shop", renamed);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;

  const Migration gap[] = {kV1, kV3};
  EXPECT_EQ(ApplyMigrations(pool(), "shop", gap).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(DbTest, FailedMigrationRollsBackAndNamesItself) {
  const Migration bad[] = {kV1, {2, "broken", "CREATE TABLE half (id int); SELEC oops;"}};
  absl::Status st = ApplyMigrations(pool(), "shop", bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(st.message(), HasSubstr("migration 2 (broken)"));
  EXPECT_EQ(SchemaVersion(pool(), "shop").value(), 1);
  EXPECT_FALSE(pool().Exec("SELECT * FROM shop.half").ok());
}

TEST_F(DbTest, MigrationArgumentsAreValidated) {
  const Migration ok[] = {kV1};
  EXPECT_EQ(ApplyMigrations(pool(), "Shop", ok).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyMigrations(pool(), "shop; DROP", ok).code(), absl::StatusCode::kInvalidArgument);
  const Migration unordered[] = {kV2, kV1};
  EXPECT_EQ(ApplyMigrations(pool(), "shop", unordered).code(), absl::StatusCode::kInvalidArgument);
  const Migration zero[] = {{0, "zero", "SELECT 1"}};
  EXPECT_EQ(ApplyMigrations(pool(), "shop", zero).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DbTest, ConcurrentReplicasMigrateSafely) {
  // CREATE TABLE without IF NOT EXISTS: applying any version twice would fail.
  const Migration all[] = {kV1, kV2, kV3};
  constexpr int kReplicas = 4;
  std::vector<std::unique_ptr<Pool>> pools;
  for (int i = 0; i < kReplicas; ++i) {
    ASSERT_OK_AND_ASSIGN(p, NewPool(2));
    pools.push_back(std::move(p));
  }
  absl::Barrier* start = new absl::Barrier(kReplicas);
  std::vector<absl::Status> results(kReplicas);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&, i] {
      if (start->Block()) delete start;
      results[i] = ApplyMigrations(*pools[i], "shop", all);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& st : results) EXPECT_TRUE(st.ok()) << st;
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT count(*), max(version) FROM shop.schema_migrations"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 3);
  EXPECT_EQ(r.GetInt64(0, 1).value(), 3);
}

// ---- audit log ----

class JournalTest : public testing::PgTest {};

TEST_F(JournalTest, AppendOnlyTableTakesInsertsAndRefusesChanges) {
  static const std::string sql = absl::StrCat(
      "CREATE TABLE events (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text);",
      AppendOnlySql("events"));
  const Migration migrations[] = {{1, "events journal", sql}};
  ASSERT_OK(ApplyMigrations(pool(), "j", migrations));
  ASSERT_OK(pool().Exec("INSERT INTO j.events (what) VALUES ('a'), ('b')").status());
  absl::Status st = pool().Exec("UPDATE j.events SET what = 'c'").status();
  EXPECT_THAT(st.message(), HasSubstr("events is append-only: UPDATE refused"));
  EXPECT_THAT(st.message(), HasSubstr("[SQLSTATE 42501]"));
  st = pool().Exec("DELETE FROM j.events WHERE seq = 1").status();
  EXPECT_THAT(st.message(), HasSubstr("events is append-only: DELETE refused"));
  st = pool().Exec("TRUNCATE j.events").status();
  EXPECT_THAT(st.message(), HasSubstr("events is append-only: TRUNCATE refused"));
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT count(*) FROM j.events"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 2);
}

class AuditTest : public testing::PgTest {
 protected:
  void SetUp() override {
    testing::PgTest::SetUp();
    if (HasFatalFailure()) return;
    static const std::string sql =
        absl::StrCat(std::string(AuditTableSql()),
                     "CREATE TABLE certs (serial text PRIMARY KEY, status text NOT NULL);");
    const Migration migrations[] = {{1, "audit and certs", sql}};
    ASSERT_OK(ApplyMigrations(pool(), "ca", migrations));
  }

  absl::Status Append(int i, TxOptions options = {}) {
    return pool().InTransaction(
        [&](Tx& tx) {
          return AppendAudit(tx, "ca",
                             {.actor = absl::StrCat("operator-", i),
                              .action = "certificate.revoke",
                              .target = absl::StrCat("serial-", i),
                              .client_address = "10.0.0.7:5123",
                              .outcome = "ok",
                              .details = "{\"reason\":\"keyCompromise\"}"},
                             absl::FromUnixMicros(1700000000000000 + i) + absl::Nanoseconds(5));
        },
        options);
  }
};

TEST_F(AuditTest, AppendsAChainThatVerifies) {
  ASSERT_OK(VerifyAuditChain(pool(), "ca"));  // Empty is fine.
  for (int i = 1; i <= 5; ++i) ASSERT_OK(Append(i));
  ASSERT_OK(VerifyAuditChain(pool(), "ca"));

  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT seq, prev_hash, hash, at, actor, target "
                                      "FROM ca.audit_log ORDER BY seq"));
  ASSERT_EQ(r.rows(), 5);
  std::string prev(32, '\0');
  for (int row = 0; row < 5; ++row) {
    EXPECT_EQ(r.GetInt64(row, 0).value(), row + 1);
    EXPECT_EQ(r.GetBytes(row, 1).value(), prev);
    AuditEvent e{.actor = std::string(r.Get(row, 4)),
                 .action = "certificate.revoke",
                 .target = std::string(r.Get(row, 5)),
                 .client_address = "10.0.0.7:5123",
                 .outcome = "ok",
                 .details = "{\"reason\":\"keyCompromise\"}"};
    EXPECT_EQ(r.GetTime(row, 3).value(), absl::FromUnixMicros(1700000000000000 + row + 1));
    EXPECT_EQ(r.GetBytes(row, 2).value(),
              AuditRecordHash(prev, row + 1, e, absl::FromUnixMicros(1700000000000001 + row)));
    prev = r.GetBytes(row, 2).value();
  }
  ASSERT_OK_AND_ASSIGN(head, AuditChainHead(pool(), "ca"));
  EXPECT_EQ(head.seq, 5);
  EXPECT_EQ(head.hash, prev);
}

TEST_F(AuditTest, StateChangeAndAuditCommitOrRollBackTogether) {
  absl::Status st = pool().InTransaction([&](Tx& tx) -> absl::Status {
    if (absl::Status s = tx.Exec("INSERT INTO ca.certs VALUES ('01', 'active')").status();
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            AppendAudit(tx, "ca", {.actor = "ra-1", .action = "certificate.issue"}, absl::Now());
        !s.ok()) {
      return s;
    }
    return absl::InternalError("HSM fell over");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT (SELECT count(*) FROM ca.certs), "
                                      "(SELECT count(*) FROM ca.audit_log)"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 0);
  EXPECT_EQ(r.GetInt64(0, 1).value(), 0);
}

TEST_F(AuditTest, RejectsIncompleteEvents) {
  absl::Status st = pool().InTransaction(
      [&](Tx& tx) { return AppendAudit(tx, "ca", {.actor = "", .action = "x"}, absl::Now()); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  st = pool().InTransaction(
      [&](Tx& tx) { return AppendAudit(tx, "ca", {.actor = "a"}, absl::Now()); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AuditTest, UpdateDeleteAndTruncateAreRefused) {
  ASSERT_OK(Append(1));
  absl::Status st = pool().Exec("UPDATE ca.audit_log SET outcome = 'denied'").status();
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("append-only"));
  EXPECT_FALSE(pool().Exec("DELETE FROM ca.audit_log").ok());
  EXPECT_FALSE(pool().Exec("TRUNCATE ca.audit_log").ok());
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT count(*), min(outcome) FROM ca.audit_log"));
  EXPECT_EQ(r.GetInt64(0, 0).value(), 1);
  EXPECT_EQ(r.Get(0, 1), "ok");
  ASSERT_OK(VerifyAuditChain(pool(), "ca"));
}

TEST_F(AuditTest, TamperedRecordIsDataLoss) {
  for (int i = 1; i <= 5; ++i) ASSERT_OK(Append(i));
  // A superuser can switch the trigger off; the chain still tells.
  ASSERT_OK(pool().InTransaction([](Tx& tx) {
    return tx.ExecScript(
        "ALTER TABLE ca.audit_log DISABLE TRIGGER audit_log_no_update_delete; "
        "UPDATE ca.audit_log SET outcome = 'denied' WHERE seq = 3; "
        "ALTER TABLE ca.audit_log ENABLE TRIGGER audit_log_no_update_delete;");
  }));
  absl::Status st = VerifyAuditChain(pool(), "ca");
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_THAT(st.message(), HasSubstr("seq 3"));
}

TEST_F(AuditTest, RemovedRecordIsDataLoss) {
  for (int i = 1; i <= 5; ++i) ASSERT_OK(Append(i));
  ASSERT_OK(pool().InTransaction([](Tx& tx) {
    return tx.ExecScript(
        "ALTER TABLE ca.audit_log DISABLE TRIGGER audit_log_no_update_delete; "
        "DELETE FROM ca.audit_log WHERE seq = 2; "
        "ALTER TABLE ca.audit_log ENABLE TRIGGER audit_log_no_update_delete;");
  }));
  absl::Status st = VerifyAuditChain(pool(), "ca");
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_THAT(st.message(), HasSubstr("seq 2"));
}

TEST_F(AuditTest, RehashedRecordBreaksTheNextLink) {
  for (int i = 1; i <= 4; ++i) ASSERT_OK(Append(i));
  // Edit record 2 and fix up its own hash: record 3's prev_hash no longer matches.
  ASSERT_OK_AND_ASSIGN(r, pool().Exec("SELECT prev_hash, at FROM ca.audit_log WHERE seq = 2"));
  AuditEvent forged{.actor = "operator-2",
                    .action = "certificate.revoke",
                    .target = "serial-999",
                    .client_address = "10.0.0.7:5123",
                    .outcome = "ok",
                    .details = "{\"reason\":\"keyCompromise\"}"};
  std::string hash = AuditRecordHash(r.GetBytes(0, 0).value(), 2, forged, r.GetTime(0, 1).value());
  ASSERT_OK(pool().InTransaction([&](Tx& tx) -> absl::Status {
    if (absl::Status s =
            tx.ExecScript("ALTER TABLE ca.audit_log DISABLE TRIGGER audit_log_no_update_delete");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = tx.Exec("UPDATE ca.audit_log SET target = $1, hash = $2 WHERE seq = 2",
                                 {Param::Text(forged.target), Param::Bytes(hash)})
                             .status();
        !s.ok()) {
      return s;
    }
    return tx.ExecScript("ALTER TABLE ca.audit_log ENABLE TRIGGER audit_log_no_update_delete");
  }));
  absl::Status st = VerifyAuditChain(pool(), "ca");
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_THAT(st.message(), HasSubstr("seq 3"));
}

TEST_F(AuditTest, ConcurrentAppendsKeepOneChain) {
  constexpr int kThreads = 8;
  constexpr int kEach = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!Append(t * 1000 + i).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK(VerifyAuditChain(pool(), "ca"));
  ASSERT_OK_AND_ASSIGN(head, AuditChainHead(pool(), "ca"));
  EXPECT_EQ(head.seq, kThreads * kEach);
}

TEST_F(AuditTest, SerializableAppendsRetryOnConflict) {
  constexpr int kThreads = 4;
  constexpr int kEach = 5;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        absl::Status st =
            Append(t * 1000 + i, {.isolation = Isolation::kSerializable, .max_retries = 50});
        if (!st.ok()) {
          ++failures;
          ADD_FAILURE() << st;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_OK(VerifyAuditChain(pool(), "ca"));
  ASSERT_OK_AND_ASSIGN(head, AuditChainHead(pool(), "ca"));
  EXPECT_EQ(head.seq, kThreads * kEach);
}

// An account's trail over the audit log and a journal whose target column is named otherwise,
// merged newest first and paged; the owner's migration indexes the log by target and actor.
TEST_F(AuditTest, ListsRecordsOfTwoTablesByTargetOrActorNewestFirst) {
  static const std::string sql = absl::StrCat(
      "CREATE TABLE decisions (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
      "request_id text NOT NULL, at timestamptz NOT NULL, actor text NOT NULL, "
      "action text NOT NULL, client_address text NOT NULL, outcome text NOT NULL, "
      "details text NOT NULL);",
      std::string(AuditIndexSql()));
  const Migration migrations[] = {{1, "audit and certs", "-- SetUp applied it"},
                                  {2, "decisions, indexes", sql}};
  ASSERT_OK(ApplyMigrations(pool(), "ca", migrations));
  ASSERT_OK_AND_ASSIGN(
      indexes, pool().Exec("SELECT string_agg(indexname, ' ' ORDER BY indexname) "
                           "FROM pg_indexes WHERE schemaname = 'ca' AND tablename = 'audit_log'"));
  EXPECT_EQ(indexes.Get(0, 0), "audit_log_actor audit_log_pkey audit_log_target");
  for (int i = 1; i <= 4; ++i) ASSERT_OK(Append(i));  // Targets serial-1..4, at +1..4 us.
  ASSERT_OK(pool()
                .Exec("INSERT INTO ca.decisions (request_id, at, actor, action, client_address, "
                      "outcome, details) VALUES ('req-1', $1, 'operator-2', 'sign.approve', '', "
                      "'ok', ''), ('req-2', $2, 'device:x', 'sign.deny', '', 'ok', '')",
                      {Param::Time(absl::FromUnixMicros(1700000000000003)),
                       Param::Time(absl::FromUnixMicros(1700000000000005))})
                .status());
  const AuditQuery query{.tables = {{"ca.audit_log"}, {"ca.decisions", "request_id"}},
                         .targets = {"serial-1", "req-2"},
                         .actors = {"operator-2"},
                         .page_size = 2};
  ASSERT_OK_AND_ASSIGN(first, ListAuditRecords(pool(), query));
  std::vector<std::string> seen;
  for (const AuditRecord& r : first.records) {
    seen.push_back(absl::StrCat(r.source, " ", r.event.target));
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("ca.decisions req-2", "ca.decisions req-1"));
  ASSERT_FALSE(first.next_page_token.empty());
  AuditQuery next = query;
  next.page_token = first.next_page_token;
  ASSERT_OK_AND_ASSIGN(second, ListAuditRecords(pool(), next));
  seen.clear();
  for (const AuditRecord& r : second.records) {
    seen.push_back(absl::StrCat(r.source, " ", r.event.target));
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("ca.audit_log serial-2", "ca.audit_log serial-1"));
  EXPECT_TRUE(second.next_page_token.empty());

  next.page_token = "1.9.1";  // No third table.
  EXPECT_THAT(ListAuditRecords(pool(), next).status().message(), HasSubstr("page_token"));
  EXPECT_THAT(AccountAuditPageSize(201, "").status().message(), HasSubstr("page_size"));
  EXPECT_THAT(AccountAuditPageSize(10, std::string(65, '1')).status().message(),
              HasSubstr("page_token"));
  EXPECT_EQ(AccountAuditPageSize(0, "").value(), 50);
}

}  // namespace
}  // namespace qsign::db
