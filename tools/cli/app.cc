#include "tools/cli/app.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/oids.h"
#include "tools/cli/args.h"

namespace qsign::cli {
namespace {

namespace pb = ::qsign::v1;

void ShowRequest(const Output& out, const pb::ConsentRequest& r) {
  out.Line(absl::StrCat("request ", r.request_id(), " (",
                        r.kind() == pb::CONSENT_REQUEST_KIND_LOGIN ? "login" : "sign", "):\n  ",
                        absl::StrReplaceAll(r.display_text(), {{"\n", "\n  "}})));
  // What the user knows the documents by: name, pages, the whole file's SHA-256.
  for (const pb::DocumentInfo& d : r.sign().documents()) {
    std::string line =
        absl::StrCat("  document: ", d.document_name().empty() ? d.label() : d.document_name());
    if (d.page_count() > 0) absl::StrAppend(&line, ", ", d.page_count(), " page(s)");
    if (!d.document_digest().empty()) {
      absl::StrAppend(&line, ", ",
                      r.sign().hash_algorithm_oid() == oid::kSha256 ? "SHA-256 " : "digest ",
                      absl::BytesToHexString(d.document_digest()));
    }
    out.Line(line);
  }
}

}  // namespace

void AppCommands::Add(CLI::App* qsign, Command* selected) {
  CLI::App* app = AddCommand(qsign, "app", "a simulated consent app");

  CLI::App* enroll = AddCommand(app, "enroll", "enrol with the activation code and a PIN");
  AddOption(enroll, "activation_code", &activation_code_, "from the registration officer");
  AddOption(enroll, "pin", &pin_, "the PIN that approves requests");
  AddOption(enroll, "device_name", &device_name_, "how the device is listed");
  enroll->callback([this, selected] { *selected = [this](Context& ctx) { return Enroll(ctx); }; });

  CLI::App* watch = AddCommand(app, "watch", "decide requests as they come");
  AddOption(watch, "approve_with_pin", &approve_with_pin_, "approve each with PIN; else ask");
  AddOption(watch, "count", &count_, "stop after N decisions (0: never)");
  AddOption(watch, "timeout", &watch_timeout_, "stop after SECONDS (0: never)");
  watch->callback([this, selected] { *selected = [this](Context& ctx) { return Watch(ctx); }; });

  CLI::App* deny = AddCommand(app, "deny", "deny the next request");
  AddOption(deny, "timeout", &deny_timeout_, "seconds to wait for it");
  deny->callback([this, selected] { *selected = [this](Context& ctx) { return Deny(ctx); }; });

  CLI::App* change = AddCommand(app, "change-pin", "change the PIN (the old one counts as a try)");
  AddOption(change, "old_pin", &old_pin_, "the PIN now");
  AddOption(change, "new_pin", &new_pin_, "the new PIN");
  change->callback(
      [this, selected] { *selected = [this](Context& ctx) { return ChangePin(ctx); }; });

  CLI::App* reset =
      AddCommand(app, "reset-pin", "set a new PIN after a registration officer's unblock-pin");
  AddOption(reset, "new_pin", &new_pin_, "the new PIN");
  reset->callback([this, selected] { *selected = [this](Context& ctx) { return ResetPin(ctx); }; });
}

Result AppCommands::Load(Context& ctx, std::unique_ptr<consent::ConsentAppSimulator>* app) const {
  absl::StatusOr<StateDir::Device> device = ctx.state.LoadDevice();
  if (!device.ok()) {
    return Failure{kUsage, absl::StrCat("no enrolled app in ", ctx.state.AppDir(),
                                        ": run qsign app enroll --activation_code=... first")};
  }
  auto loaded = consent::ConsentAppSimulator::FromPrivateKeyPem(
      ctx.channel, device->private_key_pem, device->device_id, device->account_id);
  if (!loaded.ok()) return Failure{kUsage, loaded.status().ToString()};
  *app = *std::move(loaded);
  return std::nullopt;
}

Result AppCommands::Enroll(Context& ctx) const {
  if (Result f = Required("activation_code", activation_code_)) return f;
  if (Result f = Required("pin", pin_)) return f;
  auto app = consent::ConsentAppSimulator::New(ctx.channel);
  if (!app.ok()) return Failure{kUsage, app.status().ToString()};
  absl::Status s = (*app)->Enroll(activation_code_, device_name_, pin_);
  if (!s.ok()) return ctx.FromStatus("app enroll", s);
  absl::StatusOr<std::string> pem = (*app)->PrivateKeyPem();
  if (!pem.ok()) return Failure{kUsage, pem.status().ToString()};
  if (absl::Status st = ctx.state.SaveDevice({*pem, (*app)->device_id(), (*app)->account_id()});
      !st.ok()) {
    return Failure{kUsage, std::string(st.message())};
  }
  ctx.out.Add("device_id", (*app)->device_id());
  ctx.out.Add("account_id", (*app)->account_id());
  ctx.out.Add("app_dir", ctx.state.AppDir());
  ctx.out.Print("app enrolled; keep qsign app watch running to receive requests");
  return std::nullopt;
}

Result AppCommands::Watch(Context& ctx) const {
  std::unique_ptr<consent::ConsentAppSimulator> app;
  if (Result f = Load(ctx, &app)) return f;
  int count = 0, timeout = 0;  // 0: forever.
  if (!ParseSeconds(count_, 0, &count) || !ParseSeconds(watch_timeout_, 0, &timeout)) {
    return Usage("--count and --timeout: non-negative numbers");
  }
  absl::Status s = app->StartWatching();
  if (!s.ok()) return ctx.FromStatus("app watch", s);
  ctx.out.Line("app: watching for requests (Ctrl-C stops)");
  const absl::Time until =
      timeout == 0 ? absl::InfiniteFuture() : absl::Now() + absl::Seconds(timeout);
  int decided = 0;
  while (count == 0 || decided < count) {
    if (absl::Now() >= until) break;
    auto r = app->NextRequest(std::min(absl::Seconds(5), until - absl::Now()));
    if (r.status().code() == absl::StatusCode::kDeadlineExceeded) continue;
    if (!r.ok()) {
      // The device was deactivated (revoke-all, new enrolment) or the server went away.
      if (r.status().code() == absl::StatusCode::kPermissionDenied) {
        ctx.out.Add("decided", absl::StrCat(decided));
        ctx.out.Print("app: this device is no longer active (revoked or replaced); enrol again");
        return std::nullopt;
      }
      return ctx.FromStatus("app watch", r.status());
    }
    ShowRequest(ctx.out, *r);
    std::string use_pin = approve_with_pin_;
    bool approve = true;
    if (use_pin.empty() || use_pin == "true") {
      std::cout << "approve? [y/N] " << std::flush;
      std::string answer;
      if (!std::getline(std::cin, answer)) break;
      approve = answer == "y" || answer == "Y" || answer == "yes";
      if (approve) {
        std::cout << "PIN: " << std::flush;
        if (!std::getline(std::cin, use_pin)) break;
      }
    }
    auto decision = approve ? app->Approve(*r, use_pin) : app->Deny(*r);
    if (!decision.ok()) return ctx.FromStatus("app approve", decision.status());
    ++decided;
    const std::string result = pb::ApproveResult_Name(decision->result());
    ctx.out.Line(absl::StrCat("app: ", approve ? "approved" : "denied", " -> ", result),
                 {{"request_id", r->request_id()},
                  {"decision", approve ? "approve" : "deny"},
                  {"result", result}});
  }
  app->StopWatching();
  return std::nullopt;
}

Result AppCommands::Deny(Context& ctx) const {
  std::unique_ptr<consent::ConsentAppSimulator> app;
  if (Result f = Load(ctx, &app)) return f;
  int timeout = 0;
  if (!ParseSeconds(deny_timeout_, 1, &timeout)) {
    return Usage("--timeout: seconds, a positive number");
  }
  absl::Status s = app->StartWatching();
  if (!s.ok()) return ctx.FromStatus("app deny", s);
  auto r = app->NextRequest(absl::Seconds(timeout));
  if (!r.ok()) return ctx.FromStatus("app deny: waiting for a request", r.status());
  ShowRequest(ctx.out, *r);
  auto resp = app->Deny(*r);
  app->StopWatching();
  if (!resp.ok()) return ctx.FromStatus("app deny", resp.status());
  ctx.out.Add("request_id", r->request_id());
  ctx.out.Print("denied");
  return std::nullopt;
}

Result AppCommands::ChangePin(Context& ctx) const {
  if (Result f = Required("old_pin", old_pin_)) return f;
  if (Result f = Required("new_pin", new_pin_)) return f;
  std::unique_ptr<consent::ConsentAppSimulator> app;
  if (Result f = Load(ctx, &app)) return f;
  auto resp = app->ChangePin(old_pin_, new_pin_);
  if (!resp.ok()) return ctx.FromStatus("app change-pin", resp.status());
  switch (resp->result()) {
    case pb::CHANGE_PIN_RESULT_CHANGED:
      ctx.out.Print("PIN changed; approve with the new PIN from now on");
      return std::nullopt;
    case pb::CHANGE_PIN_RESULT_PIN_WRONG:
      return Failure{kRefused, absl::StrCat("app change-pin: the PIN is wrong; ",
                                            resp->remaining_pin_attempts(),
                                            " tries left before it is blocked")};
    default:
      return Failure{kRefused,
                     "app change-pin: the PIN is blocked; a registration officer re-proofs you "
                     "and unblocks it (qsign unblock-pin), then qsign app reset-pin"};
  }
}

Result AppCommands::ResetPin(Context& ctx) const {
  if (Result f = Required("new_pin", new_pin_)) return f;
  std::unique_ptr<consent::ConsentAppSimulator> app;
  if (Result f = Load(ctx, &app)) return f;
  if (absl::Status s = app->ResetPin(new_pin_); !s.ok()) {
    return ctx.FromStatus("app reset-pin", s);
  }
  ctx.out.Print("new PIN set; approve with it from now on");
  return std::nullopt;
}

}  // namespace qsign::cli
