#include "services/web/audit_trail.h"

#include <array>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"

namespace qsign::web {
namespace {

namespace pb = ::qsign::v1;

// A service's position: its page token (empty: its newest record), or nullopt once it has
// nothing older.
using Position = std::optional<std::string>;
using Positions = std::array<Position, kAuditSources>;

// "<pos>~<pos>~<pos>", each the web-safe base64 of a service's token, or "." when it is done.
std::string Encode(const Positions& positions) {
  std::vector<std::string> parts;
  for (const Position& p : positions) {
    parts.push_back(p.has_value() ? absl::WebSafeBase64Escape(*p) : ".");
  }
  return absl::StrJoin(parts, "~");
}

absl::StatusOr<Positions> Decode(std::string_view page) {
  Positions positions;
  for (Position& p : positions) p = "";
  if (page.empty()) return positions;
  const absl::Status bad = absl::InvalidArgumentError("page: not a page of this audit trail");
  std::vector<absl::string_view> parts = absl::StrSplit(Av(page), '~');
  if (page.size() > 400 || parts.size() != kAuditSources) return bad;
  for (int i = 0; i < kAuditSources; ++i) {
    if (parts[i] == ".") {
      positions[i].reset();
      continue;
    }
    std::string token;
    if (!absl::WebSafeBase64Unescape(parts[i], &token)) return bad;
    positions[i] = std::move(token);
  }
  return positions;
}

bool Newer(const pb::AuditRecord& a, const pb::AuditRecord& b) {
  if (a.at().seconds() != b.at().seconds()) return a.at().seconds() > b.at().seconds();
  return a.at().nanos() > b.at().nanos();
}

bool Same(const pb::AuditRecord& a, const pb::AuditRecord& b) {
  return a.source() == b.source() && a.seq() == b.seq();
}

}  // namespace

std::string_view AuditSourceName(AuditSource source) {
  switch (source) {
    case AuditSource::kIdentity:
      return "identity";
    case AuditSource::kLifecycle:
      return "lifecycle";
    case AuditSource::kConsent:
      return "consent";
  }
  return "unknown";
}

absl::StatusOr<AuditTrailPage> MergedAuditTrail(std::string_view account_id, std::string_view page,
                                                int page_size, AuditFetch fetch) {
  auto positions = Decode(page);
  if (!positions.ok()) return positions.status();
  AuditTrailPage out;
  std::array<pb::ListAccountAuditResponse, kAuditSources> fetched;
  std::array<bool, kAuditSources> answered{};
  auto ask = [&](int s, const std::string& token, int size) {
    pb::ListAccountAuditRequest req;
    req.set_account_id(std::string(account_id));
    req.set_page_size(size);
    req.set_page_token(token);
    return fetch(static_cast<AuditSource>(s), req);
  };
  for (int s = 0; s < kAuditSources; ++s) {
    if (!(*positions)[s].has_value()) continue;
    auto resp = ask(s, *(*positions)[s], page_size);
    if (!resp.ok()) {
      if (s == static_cast<int>(AuditSource::kIdentity) &&
          resp.status().code() == absl::StatusCode::kNotFound) {
        return resp.status();
      }
      out.failures.emplace_back(static_cast<AuditSource>(s), resp.status());
      continue;
    }
    fetched[s] = *std::move(resp);
    answered[s] = true;
  }

  // Newest first across the services; a tie goes to the service listed first.
  std::array<int, kAuditSources> shown{};
  while (static_cast<int>(out.records.size()) < page_size) {
    int pick = -1;
    for (int s = 0; s < kAuditSources; ++s) {
      if (shown[s] >= fetched[s].records_size()) continue;
      if (pick < 0 || Newer(fetched[s].records(shown[s]), fetched[pick].records(shown[pick]))) {
        pick = s;
      }
    }
    if (pick < 0) break;
    out.records.push_back(fetched[pick].records(shown[pick]++));
  }

  Positions next = *positions;
  bool more = false;
  for (int s = 0; s < kAuditSources; ++s) {
    if (!answered[s]) {
      more = more || next[s].has_value();
      continue;
    }
    const int n = fetched[s].records_size();
    if (shown[s] == n) {
      // All it answered was shown: its own token goes on (none: it has nothing older).
      if (fetched[s].next_page_token().empty()) {
        next[s].reset();
      } else {
        next[s] = fetched[s].next_page_token();
      }
    } else if (shown[s] > 0) {
      // Some were shown: the token after exactly those, from the service itself.
      auto after = ask(s, *next[s], shown[s]);
      if (after.ok() && after->records_size() == shown[s] &&
          Same(after->records(shown[s] - 1), fetched[s].records(shown[s] - 1)) &&
          !after->next_page_token().empty()) {
        next[s] = after->next_page_token();
      } else if (!after.ok()) {
        out.failures.emplace_back(static_cast<AuditSource>(s), after.status());
      }
      // Otherwise (new records came first) the position stays: some show again, none is lost.
    }
    more = more || next[s].has_value();
  }
  if (more) out.next_page = Encode(next);
  return out;
}

}  // namespace qsign::web
