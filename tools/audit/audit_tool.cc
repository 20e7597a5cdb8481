#include "tools/audit/audit_tool.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <istream>
#include <map>
#include <ostream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/db/audit.h"
#include "common/db/journal.h"
#include "common/db/migrate.h"
#include "common/file.h"
#include "common/ossl.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace qsign::audit {
namespace {

using Json = nlohmann::json;

constexpr char kHeadTag[] = "qsign.audit.head.v1";
constexpr size_t kHashSize = 32;

constexpr char kAuditSchemaV1[] = R"sql(
CREATE TABLE chain_heads (
  schema_name text NOT NULL,
  seq bigint NOT NULL CHECK (seq >= 0),
  hash bytea NOT NULL CHECK (octet_length(hash) = 32),
  signed_at timestamptz NOT NULL,
  key_id text NOT NULL,
  signature bytea NOT NULL,
  PRIMARY KEY (schema_name, signed_at, seq)
);
)sql";

void AppendU64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
}

std::string Sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}

std::string Hex(std::string_view bytes) { return absl::BytesToHexString(Av(bytes)); }

// A short form of a hash for messages: its first 8 bytes.
std::string Short(std::string_view hash) { return Hex(hash.substr(0, 8)) + "…"; }

bool SignatureVerifies(std::string_view spki, const SignedHead& head) {
  OsslPtr<EVP_PKEY> key = ParsePublicKey(spki);
  if (key == nullptr) return false;
  OsslPtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  const std::string input = HeadSigningInput(head);
  return ctx != nullptr &&
         EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), Bytes(head.signature), head.signature.size(), Bytes(input),
                          input.size()) == 1;
}

absl::StatusOr<bool> AuditSchemaExists(db::Pool& pool) {
  auto r = pool.Exec(
      "SELECT 1 FROM information_schema.tables WHERE table_schema = 'audit' AND "
      "table_name = 'chain_heads'");
  if (!r.ok()) return r.status();
  return r->rows() > 0;
}

absl::StatusOr<std::vector<SignedHead>> ReadHeads(db::Pool& pool, std::string_view schema) {
  auto r = pool.Exec(
      "SELECT seq, hash, signed_at, key_id, signature FROM audit.chain_heads "
      "WHERE schema_name = $1 ORDER BY signed_at, seq",
      {db::Param::Text(schema)});
  if (!r.ok()) return r.status();
  std::vector<SignedHead> heads;
  for (int i = 0; i < r->rows(); ++i) {
    SignedHead h{.schema = std::string(schema)};
    auto seq = r->GetInt64(i, 0);
    auto hash = r->GetBytes(i, 1);
    auto at = r->GetTime(i, 2);
    auto sig = r->GetBytes(i, 4);
    if (!seq.ok()) return seq.status();
    if (!hash.ok()) return hash.status();
    if (!at.ok()) return at.status();
    if (!sig.ok()) return sig.status();
    h.seq = *seq;
    h.hash = *std::move(hash);
    h.signed_at = *at;
    h.key_id = std::string(r->Get(i, 3));
    h.signature = *std::move(sig);
    heads.push_back(std::move(h));
  }
  return heads;
}

// The stored hash of record `seq` (the all-zero hash for seq 0); nullopt when there is none.
absl::StatusOr<std::optional<std::string>> RecordHash(db::Pool& pool, std::string_view schema,
                                                      int64_t seq) {
  if (seq == 0) return std::string(kHashSize, '\0');
  auto r = pool.Exec(absl::StrCat("SELECT hash FROM ", Av(schema), ".audit_log WHERE seq = $1"),
                     {db::Param::Int(seq)});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::nullopt;
  auto hash = r->GetBytes(0, 0);
  if (!hash.ok()) return hash.status();
  return *std::move(hash);
}

void CheckHeads(db::Pool& pool, const std::string& schema, std::string_view spki, Report& report) {
  auto heads = ReadHeads(pool, schema);
  if (!heads.ok()) {
    report.Fail(absl::StrCat("audit.chain_heads: ", heads.status().ToString()));
    return;
  }
  if (heads->empty()) {
    report.Pass(absl::StrCat(schema, ".audit_log: no signed head yet (qsign-audit sign-heads)"));
    return;
  }
  for (const SignedHead& h : *heads) {
    const std::string where =
        absl::StrCat("audit.chain_heads (", schema, ", seq ", h.seq, ", signed at ",
                     absl::FormatTime(h.signed_at, absl::UTCTimeZone()), ")");
    if (!spki.empty() && !SignatureVerifies(spki, h)) {
      report.Fail(absl::StrCat(where, ": the signature does not verify with the audit key"));
      continue;
    }
    auto stored = RecordHash(pool, schema, h.seq);
    if (!stored.ok()) {
      report.Fail(absl::StrCat(where, ": ", stored.status().ToString()));
    } else if (!stored->has_value()) {
      report.Fail(absl::StrCat(schema, ".audit_log seq ", h.seq,
                               ": missing, but a signed head names it (", where,
                               "): the newest records were dropped"));
    } else if (**stored != h.hash) {
      report.Fail(absl::StrCat(schema, ".audit_log seq ", h.seq, ": hash ", Short(**stored),
                               " differs from the signed head's ", Short(h.hash), " (", where,
                               "): the chain was rewritten"));
    }
  }
  const SignedHead& last = heads->back();
  report.Pass(absl::StrCat(
      schema, ".audit_log: ", heads->size(), " signed head(s), newest seq ", last.seq, " at ",
      absl::FormatTime(last.signed_at, absl::UTCTimeZone()),
      spki.empty() ? " (signatures NOT checked: no audit public key)" : ", signatures verified"));
}

// Append-only tables: each <table>_refuse_change() function must still have both triggers on
// <table>, enabled.
void CheckJournals(db::Pool& pool, Report& report) {
  auto r = pool.Exec(R"sql(
SELECT n.nspname, substr(p.proname, 1, length(p.proname) - length('_refuse_change')) AS tbl,
       (SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgname)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE c.relnamespace = n.oid AND t.tgfoid = p.oid AND NOT t.tgisinternal)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname LIKE '%\_refuse\_change'
 ORDER BY 1, 2)sql");
  if (!r.ok()) {
    report.Fail(absl::StrCat("append-only journals: ", r.status().ToString()));
    return;
  }
  for (int i = 0; i < r->rows(); ++i) {
    const std::string ns(r->Get(i, 0));
    const std::string tbl(r->Get(i, 1));
    const std::string table = absl::StrCat(ns, ".", tbl);
    const std::string_view triggers = r->Get(i, 2);
    std::vector<std::string> problems;
    for (const char* kind : {"_no_update_delete", "_no_truncate"}) {
      const std::string name = absl::StrCat(tbl, kind);
      const size_t at = triggers.find(name + ":");
      if (at == std::string_view::npos) {
        problems.push_back(absl::StrCat("trigger ", name, " is gone"));
      } else if (const char state = triggers[at + name.size() + 1]; state == 'D') {
        problems.push_back(absl::StrCat("trigger ", name, " is disabled"));
      }
    }
    if (problems.empty()) {
      report.Pass(absl::StrCat(table, ": append-only (UPDATE, DELETE, TRUNCATE refused)"));
    } else {
      report.Fail(absl::StrCat(table, ": no longer append-only: ", absl::StrJoin(problems, ", ")));
    }
  }
}

std::string JsonText(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

const std::string* Str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
}

std::optional<int64_t> Int(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

std::optional<std::string> HexField(const Json& j, const char* key) {
  const std::string* s = Str(j, key);
  if (s == nullptr || s->size() % 2 != 0) return std::nullopt;
  for (char c : *s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return absl::HexStringToBytes(*s);
}

}  // namespace

std::string HeadSigningInput(const SignedHead& head) {
  std::string out(kHeadTag);
  AppendU64(out, head.schema.size());
  out.append(head.schema);
  AppendU64(out, static_cast<uint64_t>(head.seq));
  out.append(head.hash);
  AppendU64(out, static_cast<uint64_t>(absl::ToUnixMicros(head.signed_at)));
  return out;
}

absl::StatusOr<std::vector<std::string>> AuditedSchemas(db::Pool& pool) {
  auto r = pool.Exec(
      "SELECT table_schema FROM information_schema.tables WHERE table_name = 'audit_log' "
      "ORDER BY 1");
  if (!r.ok()) return r.status();
  std::vector<std::string> schemas;
  for (int i = 0; i < r->rows(); ++i) schemas.emplace_back(r->Get(i, 0));
  return schemas;
}

absl::Status MigrateAuditSchema(db::Pool& pool) {
  static const std::string* const v1 =
      new std::string(absl::StrCat(kAuditSchemaV1, db::AppendOnlySql("chain_heads")));
  const db::Migration migrations[] = {{1, "signed chain heads", *v1}};
  return db::ApplyMigrations(pool, "audit", migrations);
}

absl::StatusOr<std::vector<SignedHead>> SignHeads(db::Pool& pool, hsm::Hsm& hsm,
                                                  std::string_view key_id, bool create_key,
                                                  absl::Time now) {
  if (auto s = MigrateAuditSchema(pool); !s.ok()) return s;
  auto key = hsm.GetPublicKey(key_id);
  if (!key.ok() && key.status().code() == absl::StatusCode::kNotFound && create_key) {
    key = hsm.GenerateKeyPair(key_id, hsm::KeyType::kEcP256);
  }
  if (!key.ok()) return key.status();
  if (key->type != hsm::KeyType::kEcP256) {
    return absl::FailedPreconditionError(absl::StrCat("audit key ", Av(key_id), ": not EC P-256"));
  }
  auto schemas = AuditedSchemas(pool);
  if (!schemas.ok()) return schemas.status();
  now = absl::FromUnixMicros(absl::ToUnixMicros(now));
  std::vector<SignedHead> signed_heads;
  for (const std::string& schema : *schemas) {
    auto head = db::AuditChainHead(pool, schema);
    if (!head.ok()) return head.status();
    SignedHead h{.schema = schema,
                 .seq = head->seq,
                 .hash = head->hash,
                 .signed_at = now,
                 .key_id = std::string(key_id)};
    auto sig = hsm.SignDigest(
        key_id,
        {.scheme = hsm::SignScheme::kEcdsa, .hash = hsm::HashAlgorithm::kSha256, .ecdsa_der = true},
        Sha256(HeadSigningInput(h)));
    if (!sig.ok()) return sig.status();
    h.signature = *std::move(sig);
    auto inserted = pool.Exec(
        "INSERT INTO audit.chain_heads (schema_name, seq, hash, signed_at, key_id, signature) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        {db::Param::Text(h.schema), db::Param::Int(h.seq), db::Param::Bytes(h.hash),
         db::Param::Time(h.signed_at), db::Param::Text(h.key_id), db::Param::Bytes(h.signature)});
    if (!inserted.ok()) return inserted.status();
    signed_heads.push_back(std::move(h));
  }
  return signed_heads;
}

Report Verify(db::Pool& pool, std::string_view audit_key_spki) {
  Report report;
  auto schemas = AuditedSchemas(pool);
  if (!schemas.ok()) {
    report.Fail(absl::StrCat("listing schemas: ", schemas.status().ToString()));
    return report;
  }
  auto heads_table = AuditSchemaExists(pool);
  if (!heads_table.ok()) {
    report.Fail(absl::StrCat("audit.chain_heads: ", heads_table.status().ToString()));
    return report;
  }
  for (const std::string& schema : *schemas) {
    if (absl::Status s = db::ValidateIdentifier(schema); !s.ok()) {
      report.Fail(absl::StrCat("schema \"", schema, "\": not a qsign schema name"));
      continue;
    }
    if (absl::Status s = db::VerifyAuditChain(pool, schema); !s.ok()) {
      report.Fail(std::string(s.message()));
    } else if (auto head = db::AuditChainHead(pool, schema); head.ok()) {
      report.Pass(absl::StrCat(schema, ".audit_log: ", head->seq, " records, chain intact, head ",
                               Short(head->hash)));
    } else {
      report.Fail(absl::StrCat(schema, ".audit_log: ", head.status().ToString()));
    }
    if (*heads_table) CheckHeads(pool, schema, audit_key_spki, report);
  }
  if (!*heads_table) {
    report.Fail(
        "audit.chain_heads: missing: no chain head was ever signed (qsign-audit sign-heads)");
  }
  CheckJournals(pool, report);
  return report;
}

absl::Status Export(db::Pool& pool, absl::Time from, absl::Time to, std::string_view only,
                    std::ostream& out) {
  auto schemas = AuditedSchemas(pool);
  if (!schemas.ok()) return schemas.status();
  auto heads_table = AuditSchemaExists(pool);
  if (!heads_table.ok()) return heads_table.status();
  for (const std::string& schema : *schemas) {
    if (!only.empty() && schema != only) continue;
    if (absl::Status s = db::ValidateIdentifier(schema); !s.ok()) return s;
    auto r = pool.Exec(
        absl::StrCat("SELECT seq, at, actor, action, target, client_address, outcome, details, "
                     "prev_hash, hash FROM ",
                     schema, ".audit_log WHERE at >= $1 AND at < $2 ORDER BY seq"),
        {db::Param::Time(from), db::Param::Time(to)});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) continue;
    auto first = r->GetInt64(0, 0);
    auto anchor = r->GetBytes(0, 8);
    if (!first.ok()) return first.status();
    if (!anchor.ok()) return anchor.status();
    out << JsonText({{"kind", "anchor"},
                     {"schema", schema},
                     {"seq", *first - 1},
                     {"hash", Hex(*anchor)}})
        << "\n";
    int64_t last = *first - 1;
    for (int i = 0; i < r->rows(); ++i) {
      auto seq = r->GetInt64(i, 0);
      auto at = r->GetTime(i, 1);
      auto prev = r->GetBytes(i, 8);
      auto hash = r->GetBytes(i, 9);
      if (!seq.ok() || !at.ok() || !prev.ok() || !hash.ok()) {
        return absl::DataLossError(absl::StrCat(schema, ".audit_log: unreadable record"));
      }
      last = *seq;
      out << JsonText({{"kind", "record"},
                       {"schema", schema},
                       {"seq", *seq},
                       {"at_us", absl::ToUnixMicros(*at)},
                       {"actor", r->Get(i, 2)},
                       {"action", r->Get(i, 3)},
                       {"target", r->Get(i, 4)},
                       {"client_address", r->Get(i, 5)},
                       {"outcome", r->Get(i, 6)},
                       {"details", r->Get(i, 7)},
                       {"prev_hash", Hex(*prev)},
                       {"hash", Hex(*hash)}})
          << "\n";
    }
    if (!*heads_table) continue;
    auto heads = ReadHeads(pool, schema);
    if (!heads.ok()) return heads.status();
    for (const SignedHead& h : *heads) {
      if (h.seq < *first - 1 || h.seq > last) continue;
      out << JsonText({{"kind", "head"},
                       {"schema", schema},
                       {"seq", h.seq},
                       {"hash", Hex(h.hash)},
                       {"signed_at_us", absl::ToUnixMicros(h.signed_at)},
                       {"key_id", h.key_id},
                       {"signature", Hex(h.signature)}})
          << "\n";
    }
  }
  return out.good() ? absl::OkStatus() : absl::UnavailableError("export: cannot write");
}

Report VerifyExport(std::istream& in, std::string_view audit_key_spki) {
  Report report;
  struct Chain {
    int64_t next_seq = 0;
    std::string prev_hash;
    bool broken = false;
    int64_t records = 0;
    std::map<int64_t, std::string> hashes;  // seq -> hash, anchor included.
  };
  std::map<std::string, Chain> chains;
  std::vector<SignedHead> heads;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    const std::string* kind = j.is_object() ? Str(j, "kind") : nullptr;
    const std::string* schema = j.is_object() ? Str(j, "schema") : nullptr;
    const std::optional<int64_t> seq = j.is_object() ? Int(j, "seq") : std::nullopt;
    const std::optional<std::string> hash = j.is_object() ? HexField(j, "hash") : std::nullopt;
    if (kind == nullptr || schema == nullptr || !seq || !hash || hash->size() != kHashSize) {
      report.Fail(absl::StrCat("line ", line_no, ": not an export line"));
      return report;
    }
    const std::string where =
        absl::StrCat("line ", line_no, ": ", *schema, ".audit_log seq ", *seq);
    if (*kind == "anchor") {
      chains[*schema] = Chain{.next_seq = *seq + 1, .prev_hash = *hash, .hashes = {{*seq, *hash}}};
      continue;
    }
    if (*kind == "head") {
      SignedHead h{.schema = *schema, .seq = *seq, .hash = *hash};
      const std::optional<int64_t> at = Int(j, "signed_at_us");
      const std::string* key_id = Str(j, "key_id");
      const std::optional<std::string> sig = HexField(j, "signature");
      if (!at || key_id == nullptr || !sig) {
        report.Fail(absl::StrCat("line ", line_no, ": not a signed head"));
        return report;
      }
      h.signed_at = absl::FromUnixMicros(*at);
      h.key_id = *key_id;
      h.signature = *sig;
      heads.push_back(std::move(h));
      continue;
    }
    if (*kind != "record") {
      report.Fail(absl::StrCat("line ", line_no, ": unknown kind \"", *kind, "\""));
      return report;
    }
    auto it = chains.find(*schema);
    if (it == chains.end()) {
      report.Fail(absl::StrCat(where, ": no anchor before the first record"));
      return report;
    }
    Chain& c = it->second;
    if (c.broken) continue;  // Only the first broken link of a chain.
    const std::optional<std::string> prev = HexField(j, "prev_hash");
    const std::optional<int64_t> at_us = Int(j, "at_us");
    db::AuditEvent event;
    bool complete = prev.has_value() && at_us.has_value();
    for (auto [key, field] :
         {std::pair{"actor", &event.actor}, std::pair{"action", &event.action},
          std::pair{"target", &event.target}, std::pair{"client_address", &event.client_address},
          std::pair{"outcome", &event.outcome}, std::pair{"details", &event.details}}) {
      const std::string* s = Str(j, key);
      if (s == nullptr) {
        complete = false;
        break;
      }
      *field = *s;
    }
    if (!complete) {
      report.Fail(absl::StrCat(where, ": incomplete record"));
      c.broken = true;
    } else if (*seq != c.next_seq) {
      report.Fail(absl::StrCat(where, ": expected seq ", c.next_seq,
                               " (a record was removed, inserted or reordered)"));
      c.broken = true;
    } else if (*prev != c.prev_hash) {
      report.Fail(absl::StrCat(where, ": prev_hash ", Short(*prev), " is not the hash of seq ",
                               *seq - 1, " (", Short(c.prev_hash), ")"));
      c.broken = true;
    } else if (const std::string content_hash =
                   db::AuditRecordHash(*prev, *seq, event, absl::FromUnixMicros(*at_us));
               content_hash != *hash) {
      report.Fail(absl::StrCat(where, ": hash ", Short(*hash), " does not match the content (",
                               Short(content_hash), "): the record was edited"));
      c.broken = true;
    } else {
      c.prev_hash = *hash;
      c.hashes[*seq] = *hash;
      ++c.next_seq;
      ++c.records;
    }
  }
  for (const SignedHead& h : heads) {
    const std::string where = absl::StrCat("signed head ", h.schema, " seq ", h.seq);
    if (!audit_key_spki.empty() && !SignatureVerifies(audit_key_spki, h)) {
      report.Fail(absl::StrCat(where, ": the signature does not verify with the audit key"));
      continue;
    }
    auto c = chains.find(h.schema);
    if (c == chains.end()) continue;
    auto rec = c->second.hashes.find(h.seq);
    if (rec != c->second.hashes.end() && rec->second != h.hash) {
      report.Fail(absl::StrCat(where, ": the record's hash ", Short(rec->second),
                               " differs from the signed ", Short(h.hash),
                               ": the chain was rewritten"));
    }
  }
  for (const auto& [schema, c] : chains) {
    if (!c.broken) {
      report.Pass(absl::StrCat(schema, ".audit_log: ", c.records, " records from seq ",
                               c.next_seq - c.records, ", chain intact"));
    }
  }
  report.Pass(absl::StrCat(heads.size(), " signed head(s)",
                           audit_key_spki.empty() ? " (signatures NOT checked)" : " checked"));
  return report;
}

absl::StatusOr<std::string> ReadPublicKeyFile(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  if (ParsePublicKey(*text) != nullptr) return *text;
  OsslPtr<BIO> bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
  OsslPtr<EVP_PKEY> key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  std::string der = key == nullptr ? "" : ToDer(key.get(), i2d_PUBKEY);
  if (der.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a public key (PEM or DER)"));
  }
  return der;
}

}  // namespace qsign::audit
