// The consent app in the browser: the page, and the JSON calls its script makes. The device key
// never reaches this server (the browser keeps it as a non-extractable WebCrypto key); these
// handlers only relay the app's calls to the consent service, which checks the device
// signatures and the PIN exactly as it does for any app. Nothing here needs a session: every
// call is authenticated by the activation code or a device signature (the CSRF token is still
// required, as for every POST).
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/strings.h"
#include "services/web/web_internal.h"

namespace qsign::web {
namespace {

using nlohmann::json;

// The JSON object of a request body; a parse error gives a non-object.
json BodyOf(const http::Request& req) {
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  return body.is_object() ? body : json::object();
}

std::string Str(const json& body, const char* name) {
  auto it = body.find(name);
  return it != body.end() && it->is_string() ? it->get<std::string>() : "";
}

// Standard base64 from the browser (btoa); empty on a malformed value.
std::string Bytes(const json& body, const char* name) {
  std::string out;
  if (!absl::Base64Unescape(Str(body, name), &out)) return "";
  return out;
}

// The app shows `error` (already in its language).
std::string ErrorJson(const std::string& error) { return json({{"error", error}}).dump(); }

std::string Hex(std::string_view bytes) { return absl::BytesToHexString(Av(bytes)); }

json RequestJson(const pb::ConsentRequest& r) {
  json out = {{"request_id", r.request_id()},
              {"kind", r.kind() == pb::CONSENT_REQUEST_KIND_LOGIN ? "login" : "sign"},
              {"display_text", r.display_text()},
              {"statement", absl::Base64Escape(r.statement())},
              {"expires_at", absl::ToUnixMillis(absl::FromUnixSeconds(r.expires_at().seconds()))}};
  if (r.has_login()) {
    out["code"] = r.login().verification_code();
    out["client"] = r.login().client_description();
  }
  if (r.has_sign()) {
    out["requester"] = r.sign().relying_party_name();
    out["hashes"] = r.sign().hashes_size();
    json docs = json::array();
    for (const pb::DocumentInfo& d : r.sign().documents()) {
      docs.push_back({{"label", d.label()},
                      {"name", d.document_name()},
                      {"pages", d.page_count()},
                      {"digest", Hex(d.document_digest())}});
    }
    out["documents"] = docs;
  }
  return out;
}

// A PIN input: 6 to 8 digits, never remembered by the browser.
std::string PinField(Lang l, std::string_view name, std::string_view key) {
  return Field(l, name, key, "password",
               "required inputmode=\"numeric\" pattern=\"[0-9]{6,8}\" autocomplete=\"off\"");
}

}  // namespace

void Web::AppPage(Call& c) {
  const Lang l = c.lang;
  const Frame f = FrameOf(c);
  // Sections the script shows one at a time; all text comes from here, in the page's language.
  const std::string body = Cat(
      "<div id=\"app\" data-api=\"/app/api/\">", "<p id=\"app-status\" class=\"muted\">",
      Esc(T(l, "app.loading")), "</p>", "<section id=\"enrol\" hidden><p>",
      Esc(T(l, "app.enrol.intro")), "</p>", "<form id=\"enrol-form\">",
      Field(l, "activation_code", "app.code", "text", "required autocomplete=\"off\""),
      Field(l, "device_name", "app.device_name", "text", "required maxlength=\"64\""),
      PinField(l, "pin", "app.pin"), PinField(l, "pin2", "app.pin_again"),
      Button(l, "enrol-submit", "app.enrol"), "</form></section>",
      "<section id=\"watching\" hidden><p id=\"device\"></p><p id=\"idle\" class=\"muted\">",
      Esc(T(l, "app.none")), "</p><ul id=\"requests\" class=\"requests\"></ul>",
      "<button type=\"button\" id=\"pin-menu\" class=\"link\">", Esc(T(l, "app.pin_menu")),
      "</button></section>",
      // The PIN operations: each signs a PIN operation message over a fresh challenge.
      "<section id=\"pin-settings\" hidden><h2>", Esc(T(l, "app.change_pin")), "</h2>",
      "<form id=\"change-pin-form\">", PinField(l, "old_pin", "app.old_pin"),
      PinField(l, "new_pin", "app.new_pin"), PinField(l, "new_pin2", "app.new_pin_again"),
      Button(l, "change-pin", "app.change_pin.submit"), "</form><h2>", Esc(T(l, "app.reset_pin")),
      "</h2><p>", Esc(T(l, "app.reset_pin.intro")), "</p>", "<form id=\"reset-pin-form\">",
      PinField(l, "reset_pin", "app.new_pin"), PinField(l, "reset_pin2", "app.new_pin_again"),
      Button(l, "reset-pin", "app.reset_pin.submit"), "</form>",
      "<p id=\"pin-status\" aria-live=\"polite\"></p><button type=\"button\" id=\"pin-back\" "
      "class=\"link\">",
      Esc(T(l, "app.back")), "</button></section>",
      "<section id=\"decide\" hidden class=\"card\"><h2 id=\"req-title\"></h2>",
      "<p id=\"req-text\"></p><p id=\"req-code\" class=\"code\"></p><ul id=\"req-docs\"></ul>",
      "<p id=\"req-statement\" class=\"muted\"></p>",
      "<div id=\"pin-display\" class=\"pin-display\" aria-live=\"polite\"></div>",
      "<div id=\"pinpad\" class=\"pinpad\">");
  std::string pad;
  for (const char* key : {"1", "2", "3", "4", "5", "6", "7", "8", "9", "⌫", "0", "✓"}) {
    Append(&pad, "<button type=\"button\" class=\"key\" data-key=\"", key, "\">", key, "</button>");
  }
  const std::string tail = Cat(
      "</div><div class=\"actions\"><button type=\"button\" id=\"approve\">",
      Esc(T(l, "app.approve")), "</button><button type=\"button\" id=\"deny\" class=\"danger\">",
      Esc(T(l, "app.deny")), "</button><button type=\"button\" id=\"back\" class=\"link\">",
      Esc(T(l, "action.cancel")), "</button></div><p id=\"decide-status\"></p></section>",
      "<section id=\"inactive\" hidden><p class=\"flash error\" id=\"inactive-text\">",
      Esc(T(l, "app.inactive")), "</p><button type=\"button\" id=\"reset\">",
      Esc(T(l, "app.reset")), "</button></section></div>");
  (void)f;
  Html(c, T(l, "app.heading"), Cat(body, pad, tail), "app.js",
       {"app.pin_mismatch",      "app.enrolled_as",  "app.kind.login",
        "app.kind.sign",         "app.code_is",      "app.requester",
        "app.approved",          "app.denied",       "app.pin_wrong",
        "app.pin_blocked",       "app.none",         "app.no_webcrypto",
        "err.unavailable",       "app.open",         "app.sha256",
        "app.from_portal",       "app.expired",      "app.pin_changed",
        "app.pin_reset",         "app.from",         "app.pages",
        "app.login_summary",     "app.sign_summary", "app.statement",
        "app.statement_mismatch"});
}

void Web::AppEnroll(Call& c) {
  const json body = BodyOf(c.req);
  pb::EnrollDeviceRequest req;
  req.set_activation_code(Str(body, "activation_code"));
  req.set_device_public_key(Bytes(body, "public_key"));
  req.set_device_name(Str(body, "device_name"));
  req.set_pin(Str(body, "pin"));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->EnrollDevice({.address = c.address}, req);
  if (!resp.ok()) {
    Json(c, 400, ErrorJson(ErrorText(c.lang, resp.status())));
    return;
  }
  Json(c, 200, json({{"device_id", resp->device_id()}, {"account_id", resp->account_id()}}).dump());
}

void Web::AppChallenge(Call& c) {
  const json body = BodyOf(c.req);
  pb::GetChallengeRequest req;
  req.set_device_id(Str(body, "device_id"));
  auto resp = backend_->GetChallenge({.address = c.address}, req);
  if (!resp.ok()) {
    Json(c, 400, ErrorJson(ErrorText(c.lang, resp.status())));
    return;
  }
  Json(c, 200, json({{"challenge", absl::Base64Escape(resp->challenge())}}).dump());
}

void Web::AppWatch(Call& c) {
  const json body = BodyOf(c.req);
  pb::WatchRequestsRequest req;
  req.set_device_id(Str(body, "device_id"));
  req.set_challenge(Bytes(body, "challenge"));
  req.set_signature(Bytes(body, "signature"));
  absl::flat_hash_set<std::string> known;
  if (auto it = body.find("known"); it != body.end() && it->is_array()) {
    for (const json& id : *it) {
      if (id.is_string() && known.size() < 1000) known.insert(id.get<std::string>());
    }
  }
  auto result = backend_->Watch({.address = c.address}, req, known, options_.poll_wait);
  if (!result.ok()) {
    Json(c, 503, ErrorJson(ErrorText(c.lang, result.status())));
    return;
  }
  json requests = json::array();
  for (const pb::ConsentRequest& r : result->requests) requests.push_back(RequestJson(r));
  Json(c, 200, json({{"inactive", result->inactive}, {"requests", requests}}).dump());
}

void Web::AppApprovalChallenge(Call& c) {
  const json body = BodyOf(c.req);
  pb::GetApprovalChallengeRequest req;
  req.set_request_id(Str(body, "request_id"));  // Empty: for a PIN operation.
  req.set_device_id(Str(body, "device_id"));
  auto resp = backend_->GetApprovalChallenge({.address = c.address}, req);
  if (!resp.ok()) {
    Json(c, 400, ErrorJson(ErrorText(c.lang, resp.status())));
    return;
  }
  Json(c, 200, json({{"challenge", absl::Base64Escape(resp->challenge())}}).dump());
}

// The app signed the approval message (ApproveRequest in consent.proto) with the challenge it
// got from approval-challenge; this relays it.
void Web::AppDecide(Call& c) {
  const json body = BodyOf(c.req);
  pb::ApproveRequest req;
  req.set_request_id(Str(body, "request_id"));
  req.set_device_id(Str(body, "device_id"));
  const std::string decision = Str(body, "decision");
  req.set_decision(decision == "approve" ? pb::CONSENT_DECISION_APPROVE
                   : decision == "deny"  ? pb::CONSENT_DECISION_DENY
                                         : pb::CONSENT_DECISION_UNSPECIFIED);
  req.set_pin(Str(body, "pin"));
  req.set_challenge(Bytes(body, "challenge"));
  req.set_device_signature(Bytes(body, "signature"));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->Approve({.address = c.address}, req);
  if (!resp.ok()) {
    Json(c, 400, ErrorJson(ErrorText(c.lang, resp.status())));
    return;
  }
  std::string result = "denied";
  switch (resp->result()) {
    case pb::APPROVE_RESULT_APPROVED:
      result = "approved";
      break;
    case pb::APPROVE_RESULT_PIN_WRONG:
      result = "pin_wrong";
      break;
    case pb::APPROVE_RESULT_PIN_BLOCKED:
      result = "pin_blocked";
      break;
    default:
      break;
  }
  Json(c, 200, json({{"result", result}, {"remaining", resp->remaining_pin_attempts()}}).dump());
}

// The PIN operations: the app signed the PIN operation message (ChangePinRequest in
// consent.proto) over a challenge from approval-challenge with no request id.
void Web::AppChangePin(Call& c) {
  const json body = BodyOf(c.req);
  pb::ChangePinRequest req;
  req.set_device_id(Str(body, "device_id"));
  req.set_challenge(Bytes(body, "challenge"));
  req.set_device_signature(Bytes(body, "signature"));
  req.set_old_pin(Str(body, "old_pin"));
  req.set_new_pin(Str(body, "new_pin"));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->ChangePin({.address = c.address}, req);
  if (!resp.ok()) {
    Json(c, 400, ErrorJson(ErrorText(c.lang, resp.status())));
    return;
  }
  const char* result = resp->result() == pb::CHANGE_PIN_RESULT_CHANGED     ? "changed"
                       : resp->result() == pb::CHANGE_PIN_RESULT_PIN_WRONG ? "pin_wrong"
                                                                           : "pin_blocked";
  Json(c, 200, json({{"result", result}, {"remaining", resp->remaining_pin_attempts()}}).dump());
}

void Web::AppResetPin(Call& c) {
  const json body = BodyOf(c.req);
  pb::ResetPinRequest req;
  req.set_device_id(Str(body, "device_id"));
  req.set_challenge(Bytes(body, "challenge"));
  req.set_device_signature(Bytes(body, "signature"));
  req.set_new_pin(Str(body, "new_pin"));
  *req.mutable_client() = ClientOf(c.req, c.address);
  auto resp = backend_->ResetPin({.address = c.address}, req);
  if (!resp.ok()) {
    Json(c, 400, ErrorJson(ErrorText(c.lang, resp.status())));
    return;
  }
  Json(c, 200, json({{"result", "reset"}}).dump());
}

}  // namespace qsign::web
