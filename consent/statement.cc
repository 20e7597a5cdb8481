#include "consent/statement.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsign::consent {
namespace {

enum Tag : uint8_t {
  kTagKind = 0x01,
  kTagRequestId = 0x02,
  kTagAccountId = 0x03,
  kTagCreatedAt = 0x04,
  kTagExpiresAt = 0x05,
  kTagDisplayText = 0x06,
  kTagVerificationCode = 0x10,
  kTagClientDescription = 0x11,
  kTagCredentialId = 0x20,
  kTagRelyingParty = 0x21,
  kTagHashAlgorithm = 0x22,
  kTagHash = 0x23,
  kTagDocument = 0x24,
  // Inside a document.
  kTagDocLabel = 0x01,
  kTagDocName = 0x02,
  kTagDocDigest = 0x03,
  kTagDocPages = 0x04,  // Only when a page count is given: older statements stay as they were.
  // Inside a challenge.
  kTagDeviceId = 0x01,
  kTagChallengeExpiry = 0x02,
  kTagNonce = 0x03,
  // Inside an approval message.
  kTagApprovalStatement = 0x01,
  kTagApprovalDecision = 0x02,
  kTagApprovalChallenge = 0x03,
  // Inside a PIN operation message.
  kTagPinOperation = 0x01,
  kTagPinDeviceId = 0x02,
  kTagPinChallenge = 0x03,
};

void PutU32(uint32_t v, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

void PutField(uint8_t tag, std::string_view value, std::string* out) {
  out->push_back(static_cast<char>(tag));
  PutU32(static_cast<uint32_t>(value.size()), out);
  out->append(value);
}

std::string TimeBytes(absl::Time t) {
  const int64_t micros = absl::ToUnixMicros(t);
  std::string out;
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>(static_cast<uint64_t>(micros) >> shift));
  }
  return out;
}

absl::StatusOr<absl::Time> ParseTime(std::string_view bytes) {
  if (bytes.size() != 8) return absl::InvalidArgumentError("statement: a time is 8 bytes");
  uint64_t v = 0;
  for (char c : bytes) v = (v << 8) | static_cast<uint8_t>(c);
  return absl::FromUnixMicros(static_cast<int64_t>(v));
}

struct Field {
  uint8_t tag;
  std::string_view value;
};

absl::StatusOr<std::vector<Field>> SplitFields(std::string_view in) {
  std::vector<Field> fields;
  while (!in.empty()) {
    if (in.size() < 5) return absl::InvalidArgumentError("statement: truncated field header");
    const auto tag = static_cast<uint8_t>(in[0]);
    uint32_t len = 0;
    for (int i = 1; i <= 4; ++i) len = (len << 8) | static_cast<uint8_t>(in[i]);
    in.remove_prefix(5);
    if (len > in.size()) return absl::InvalidArgumentError("statement: truncated field value");
    fields.push_back({tag, in.substr(0, len)});
    in.remove_prefix(len);
  }
  return fields;
}

std::string EncodeDocument(const DocumentInfo& d) {
  std::string out;
  PutField(kTagDocLabel, d.label, &out);
  PutField(kTagDocName, d.document_name, &out);
  PutField(kTagDocDigest, d.document_digest, &out);
  if (d.page_count > 0) {
    std::string pages;
    PutU32(d.page_count, &pages);
    PutField(kTagDocPages, pages, &out);
  }
  return out;
}

absl::StatusOr<DocumentInfo> DecodeDocument(std::string_view bytes) {
  auto fields = SplitFields(bytes);
  if (!fields.ok()) return fields.status();
  const size_t n = fields->size();
  if ((n != 3 && n != 4) || (*fields)[0].tag != kTagDocLabel || (*fields)[1].tag != kTagDocName ||
      (*fields)[2].tag != kTagDocDigest ||
      (n == 4 && ((*fields)[3].tag != kTagDocPages || (*fields)[3].value.size() != 4))) {
    return absl::InvalidArgumentError("statement: malformed document");
  }
  DocumentInfo d{.label = std::string((*fields)[0].value),
                 .document_name = std::string((*fields)[1].value),
                 .document_digest = std::string((*fields)[2].value)};
  if (n == 4) {
    for (char c : (*fields)[3].value) d.page_count = (d.page_count << 8) | static_cast<uint8_t>(c);
  }
  return d;
}

}  // namespace

absl::Time TruncateToMicros(absl::Time t) { return absl::FromUnixMicros(absl::ToUnixMicros(t)); }

std::string EncodeStatement(const Statement& s) {
  std::string out(kStatementLabel);
  PutField(kTagKind, std::string(1, static_cast<char>(s.kind)), &out);
  PutField(kTagRequestId, s.request_id, &out);
  PutField(kTagAccountId, s.account_id, &out);
  PutField(kTagCreatedAt, TimeBytes(s.created_at), &out);
  PutField(kTagExpiresAt, TimeBytes(s.expires_at), &out);
  PutField(kTagDisplayText, s.display_text, &out);
  switch (s.kind) {
    case RequestKind::kLogin:
      PutField(kTagVerificationCode, s.login.verification_code, &out);
      PutField(kTagClientDescription, s.login.client_description, &out);
      break;
    case RequestKind::kSign:
      PutField(kTagCredentialId, s.sign.credential_id, &out);
      PutField(kTagRelyingParty, s.sign.relying_party_name, &out);
      PutField(kTagHashAlgorithm, s.sign.hash_algorithm_oid, &out);
      for (const auto& h : s.sign.hashes) PutField(kTagHash, h, &out);
      for (const auto& d : s.sign.documents) PutField(kTagDocument, EncodeDocument(d), &out);
      break;
  }
  return out;
}

absl::StatusOr<Statement> DecodeStatement(std::string_view bytes) {
  if (!bytes.starts_with(kStatementLabel)) {
    return absl::InvalidArgumentError("statement: wrong label");
  }
  auto split = SplitFields(bytes.substr(kStatementLabel.size()));
  if (!split.ok()) return split.status();
  const std::vector<Field>& f = *split;
  constexpr uint8_t kHeader[] = {kTagKind,      kTagRequestId, kTagAccountId,
                                 kTagCreatedAt, kTagExpiresAt, kTagDisplayText};
  if (f.size() < std::size(kHeader)) return absl::InvalidArgumentError("statement: too short");
  for (size_t i = 0; i < std::size(kHeader); ++i) {
    if (f[i].tag != kHeader[i]) return absl::InvalidArgumentError("statement: fields out of order");
  }
  Statement s;
  if (f[0].value.size() != 1) return absl::InvalidArgumentError("statement: bad kind");
  const auto kind = static_cast<uint8_t>(f[0].value[0]);
  if (kind != static_cast<uint8_t>(RequestKind::kLogin) &&
      kind != static_cast<uint8_t>(RequestKind::kSign)) {
    return absl::InvalidArgumentError("statement: unknown kind");
  }
  s.kind = static_cast<RequestKind>(kind);
  s.request_id = std::string(f[1].value);
  s.account_id = std::string(f[2].value);
  auto created = ParseTime(f[3].value);
  if (!created.ok()) return created.status();
  s.created_at = *created;
  auto expires = ParseTime(f[4].value);
  if (!expires.ok()) return expires.status();
  s.expires_at = *expires;
  s.display_text = std::string(f[5].value);

  size_t i = std::size(kHeader);
  if (s.kind == RequestKind::kLogin) {
    if (f.size() != i + 2 || f[i].tag != kTagVerificationCode ||
        f[i + 1].tag != kTagClientDescription) {
      return absl::InvalidArgumentError("statement: malformed login details");
    }
    s.login.verification_code = std::string(f[i].value);
    s.login.client_description = std::string(f[i + 1].value);
  } else {
    if (f.size() < i + 4 || f[i].tag != kTagCredentialId || f[i + 1].tag != kTagRelyingParty ||
        f[i + 2].tag != kTagHashAlgorithm) {
      return absl::InvalidArgumentError("statement: malformed sign details");
    }
    s.sign.credential_id = std::string(f[i].value);
    s.sign.relying_party_name = std::string(f[i + 1].value);
    s.sign.hash_algorithm_oid = std::string(f[i + 2].value);
    i += 3;
    while (i < f.size() && f[i].tag == kTagHash) s.sign.hashes.emplace_back(f[i++].value);
    while (i < f.size() && f[i].tag == kTagDocument) {
      auto doc = DecodeDocument(f[i++].value);
      if (!doc.ok()) return doc.status();
      s.sign.documents.push_back(*std::move(doc));
    }
    if (i != f.size()) return absl::InvalidArgumentError("statement: unexpected field");
    if (s.sign.hashes.empty()) return absl::InvalidArgumentError("statement: no hashes");
    if (!s.sign.documents.empty() && s.sign.documents.size() != s.sign.hashes.size()) {
      return absl::InvalidArgumentError("statement: documents do not match hashes");
    }
  }
  // Each value has one encoding; this also refuses anything the checks above let through.
  if (EncodeStatement(s) != bytes) return absl::InvalidArgumentError("statement: not canonical");
  return s;
}

std::string ApprovalMessage(std::string_view statement, Decision decision,
                            std::string_view challenge) {
  std::string out(kApprovalLabel);
  PutField(kTagApprovalStatement, statement, &out);
  PutField(kTagApprovalDecision, std::string(1, static_cast<char>(decision)), &out);
  PutField(kTagApprovalChallenge, challenge, &out);
  return out;
}

std::string PinOperationMessage(PinOperation op, std::string_view device_id,
                                std::string_view challenge) {
  std::string out(kPinOperationLabel);
  PutField(kTagPinOperation, std::string(1, static_cast<char>(op)), &out);
  PutField(kTagPinDeviceId, device_id, &out);
  PutField(kTagPinChallenge, challenge, &out);
  return out;
}

std::string EncodeChallenge(std::string_view device_id, absl::Time expires_at,
                            std::string_view nonce) {
  std::string out(kChallengeLabel);
  PutField(kTagDeviceId, device_id, &out);
  PutField(kTagChallengeExpiry, TimeBytes(expires_at), &out);
  PutField(kTagNonce, nonce, &out);
  return out;
}

absl::StatusOr<DisplayLanguage> ParseDisplayLanguage(std::string_view tag, std::string_view field) {
  if (tag.empty() || tag == "sr-Cyrl") return DisplayLanguage::kSrCyrl;
  if (tag == "sr-Latn") return DisplayLanguage::kSrLatn;
  if (tag == "en") return DisplayLanguage::kEn;
  return absl::InvalidArgumentError(
      absl::StrCat(std::string(field), ": sr-Cyrl, sr-Latn or en (empty: sr-Cyrl)"));
}

std::string LoginDisplayText(const LoginDetails& login, DisplayLanguage lang) {
  switch (lang) {
    case DisplayLanguage::kSrLatn:
      return absl::StrCat("Prijava na eID portal, kod ", login.verification_code);
    case DisplayLanguage::kEn:
      return absl::StrCat("Log in to eID portal, code ", login.verification_code);
    case DisplayLanguage::kSrCyrl:
      break;
  }
  return absl::StrCat("Пријава на еИД портал, код ", login.verification_code);
}

namespace {

// Serbian counts: 1, 21 документ; 2-4, 22-24 документа; 0, 5-20, 25-30 докумената.
const char* SerbianDocuments(size_t n, bool latin) {
  const size_t ones = n % 10, tens = n % 100;
  if (ones == 1 && tens != 11) return latin ? "dokument" : "документ";
  if (ones >= 2 && ones <= 4 && (tens < 12 || tens > 14)) return latin ? "dokumenta" : "документа";
  return latin ? "dokumenata" : "докумената";
}

}  // namespace

std::string SignDisplayText(const SignDetails& sign, DisplayLanguage lang) {
  const bool en = lang == DisplayLanguage::kEn;
  const bool latin = lang == DisplayLanguage::kSrLatn;
  std::string what;
  if (sign.documents.size() == 1) {
    what = en ? absl::StrCat("\"", sign.documents[0].label, "\"")
              : absl::StrCat("„", sign.documents[0].label, "“");
  } else {
    const size_t n = sign.documents.empty() ? sign.hashes.size() : sign.documents.size();
    what =
        absl::StrCat(n, " ", en ? (n == 1 ? "document" : "documents") : SerbianDocuments(n, latin));
  }
  const char* verb = en ? "Sign " : latin ? "Potpiši " : "Потпиши ";
  const char* for_ = en ? " for " : latin ? " za " : " за ";
  if (sign.relying_party_name.empty()) return absl::StrCat(verb, what);
  return absl::StrCat(verb, what, for_, sign.relying_party_name);
}

}  // namespace qsign::consent
