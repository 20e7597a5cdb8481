#include "common/pades/pdf_signature.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <podofo/podofo.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/ossl.h"

namespace qsign::pades {
namespace {

namespace pdf = ::PoDoFo;

// Debian's Abseil has its own string_view.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Sha256Of(std::string_view a, std::string_view b) {
  std::string out(32, '\0');
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int len = 0;
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, a.data(), a.size());
  EVP_DigestUpdate(ctx, b.data(), b.size());
  EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(out.data()), &len);
  EVP_MD_CTX_free(ctx);
  return out;
}

// PoDoFo reports errors by exception; they end here, as a status naming what was being done.
template <typename F>
auto Guard(std::string_view what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const pdf::PdfError& e) {
    // ErrorMessage is null for some codes (found by tests/fuzz/pdf_fuzz): a std::string from it
    // would throw out of this handler and terminate the process.
    const char* message = pdf::PdfError::ErrorMessage(e.GetError());
    std::string detail = message != nullptr
                             ? std::string(message)
                             : absl::StrCat("PoDoFo error ", static_cast<int>(e.GetError()));
    const auto& callstack = e.GetCallstack();
    if (!callstack.empty() && !callstack.front().GetInformation().empty()) {
      absl::StrAppend(&detail, ": ", callstack.front().GetInformation());
    }
    return absl::InvalidArgumentError(absl::StrCat(A(what), ": ", detail));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(A(what), ": out of memory"));
  }
}

void QuietPodofo() {
  pdf::PdfError::EnableDebug(false);
  pdf::PdfError::EnableLogging(false);
}

absl::Status LoadPdf(std::string_view bytes, bool for_update, pdf::PdfMemDocument* doc) {
  if (!bytes.starts_with("%PDF-")) return absl::InvalidArgumentError("not a PDF (no %PDF- header)");
  doc->LoadFromBuffer(bytes.data(), static_cast<long>(bytes.size()), for_update);
  if (doc->GetEncrypted()) return absl::InvalidArgumentError("encrypted PDFs are not supported");
  if (doc->GetPageCount() <= 0) return absl::InvalidArgumentError("the PDF has no page");
  return absl::OkStatus();
}

pdf::PdfString Utf8(const std::string& s) {
  return pdf::PdfString(reinterpret_cast<const pdf::pdf_utf8*>(s.c_str()));
}

pdf::PdfObject* Resolve(pdf::PdfVecObjects& objects, pdf::PdfObject* o) {
  for (int hops = 0; o != nullptr && o->IsReference() && hops < 8; ++hops) {
    o = objects.GetObject(o->GetReference());
  }
  return o;
}

// Every terminal field of the AcroForm (walking /Kids), with its inherited /FT.
void CollectFields(pdf::PdfVecObjects& objects, pdf::PdfObject* node, const pdf::PdfName& ft,
                   int depth, std::vector<std::pair<pdf::PdfObject*, pdf::PdfName>>* out) {
  node = Resolve(objects, node);
  if (node == nullptr || !node->IsDictionary() || depth > 32) return;
  pdf::PdfName type = ft;
  if (const pdf::PdfObject* t = node->GetDictionary().GetKey("FT"); t && t->IsName()) {
    type = t->GetName();
  }
  pdf::PdfObject* kids = Resolve(objects, node->GetDictionary().GetKey("Kids"));
  bool has_field_kids = false;
  if (kids != nullptr && kids->IsArray()) {
    for (auto& kid : kids->GetArray()) {
      pdf::PdfObject* k = Resolve(objects, &kid);
      if (k != nullptr && k->IsDictionary() && k->GetDictionary().HasKey("T")) {
        has_field_kids = true;
        CollectFields(objects, k, type, depth + 1, out);
      }
    }
  }
  if (!has_field_kids) out->push_back({node, type});
}

std::vector<std::pair<pdf::PdfObject*, pdf::PdfName>> AllFields(pdf::PdfMemDocument& doc) {
  std::vector<std::pair<pdf::PdfObject*, pdf::PdfName>> fields;
  pdf::PdfVecObjects& objects = doc.GetObjects();
  pdf::PdfObject* form = Resolve(objects, doc.GetCatalog()->GetDictionary().GetKey("AcroForm"));
  if (form == nullptr || !form->IsDictionary()) return fields;
  pdf::PdfObject* list = Resolve(objects, form->GetDictionary().GetKey("Fields"));
  if (list == nullptr || !list->IsArray()) return fields;
  for (auto& f : list->GetArray()) CollectFields(objects, &f, pdf::PdfName(), 0, &fields);
  return fields;
}

std::string FieldName(pdf::PdfObject* field) {
  const pdf::PdfObject* t = field->GetDictionary().GetKey("T");
  return t != nullptr && t->IsString() ? t->GetString().GetStringUtf8() : std::string();
}

// The length of the DER TLV at the start of `der` (its padding ignored); 0 if malformed.
size_t DerLength(std::string_view der) {
  if (der.size() < 2 || static_cast<uint8_t>(der[0]) != 0x30) return 0;
  const auto first = static_cast<uint8_t>(der[1]);
  if (first < 0x80) return std::min(der.size(), size_t{2} + first);
  const int n = first & 0x7f;
  if (n < 1 || n > 4 || der.size() < size_t{2} + n) return 0;
  size_t len = 0;
  for (int i = 0; i < n; ++i) len = (len << 8) | static_cast<uint8_t>(der[2 + i]);
  const size_t total = 2 + n + len;
  return total <= der.size() ? total : 0;
}

// Offsets just past each "%%EOF" (and its end of line): the ends of the file's revisions.
std::vector<int64_t> RevisionEnds(std::string_view bytes) {
  std::vector<int64_t> ends;
  for (size_t at = bytes.find("%%EOF"); at != std::string_view::npos;
       at = bytes.find("%%EOF", at + 5)) {
    size_t end = at + 5;
    if (end < bytes.size() && bytes[end] == '\r') ++end;
    if (end < bytes.size() && bytes[end] == '\n') ++end;
    ends.push_back(static_cast<int64_t>(end));
  }
  return ends;
}

void DrawAppearance(pdf::PdfMemDocument& doc, const Appearance& a, pdf::PdfXObject* xobject) {
  pdf::PdfPainter painter;
  painter.SetPage(xobject);
  painter.SetStrokingColor(0.1, 0.2, 0.5);
  painter.SetStrokeWidth(1.0);
  painter.Rectangle(0.5, 0.5, a.width - 1, a.height - 1);
  painter.Stroke();
  // Identity-H with an embedded subset of the TrueType font: any Unicode letter the font has.
  pdf::PdfFont* font = doc.CreateFontSubset(
      "DejaVuSans", false, false, false, pdf::PdfEncodingFactory::GlobalIdentityEncodingInstance(),
      a.font_file.c_str());
  if (font == nullptr) {
    PODOFO_RAISE_ERROR_INFO(pdf::ePdfError_InvalidFontFile, "cannot load the appearance font");
  }
  const double name_size = std::min(14.0, a.height / 3);
  font->SetFontSize(static_cast<float>(name_size));
  painter.SetFont(font);
  painter.SetColor(0, 0, 0);
  painter.DrawText(6, a.height - 6 - name_size, Utf8(a.signer_name));
  font->SetFontSize(static_cast<float>(name_size * 0.7));
  painter.SetFont(font);
  painter.DrawText(6, 8, Utf8(a.detail));
  painter.FinishPage();
}

// The certificate's commonName in UTF-8; empty when it has none.
std::string CommonName(std::string_view cert_der) {
  const auto* p = reinterpret_cast<const unsigned char*>(cert_der.data());
  OsslPtr<X509> cert(d2i_X509(nullptr, &p, static_cast<long>(cert_der.size())));
  if (!cert) return "";
  X509_NAME* name = X509_get_subject_name(cert.get());  // Owned by cert.
  const int at = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (at < 0) return "";
  unsigned char* utf8 = nullptr;
  const int len =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)));
  if (len < 0) return "";
  OsslPtr<unsigned char> owned(utf8);
  return std::string(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
}

}  // namespace

Appearance AppearanceFor(std::string_view signer_cert_der, absl::Time when) {
  return Appearance{
      .signer_name = CommonName(signer_cert_der),
      .detail = absl::StrCat("Потписано / Signed ",
                             absl::FormatTime("%Y-%m-%d %H:%M UTC", when, absl::UTCTimeZone()))};
}

absl::StatusOr<PreparedPdf> PrepareSignature(std::string_view bytes,
                                             const PrepareOptions& options) {
  if (options.contents_size < 1024 || options.contents_size > (1 << 20)) {
    return absl::InvalidArgumentError("contents_size: 1 KiB to 1 MiB");
  }
  QuietPodofo();
  return Guard("PDF", [&]() -> absl::StatusOr<PreparedPdf> {
    pdf::PdfMemDocument doc;
    if (absl::Status s = LoadPdf(bytes, true, &doc); !s.ok()) return s;

    std::set<std::string> names;
    for (const auto& [field, type] : AllFields(doc)) names.insert(FieldName(field));
    std::string name = options.field_name;
    if (name.empty()) {
      for (int n = 1; name.empty() || names.count(name) > 0; ++n)
        name = absl::StrCat("Signature", n);
    } else if (names.count(name) > 0) {
      return absl::AlreadyExistsError(absl::StrCat("a field named ", name, " exists"));
    }

    const Appearance* look = options.appearance ? &*options.appearance : nullptr;
    const int page_index = look != nullptr ? look->page - 1 : 0;
    if (page_index < 0 || page_index >= doc.GetPageCount()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "appearance page ", page_index + 1, ": the PDF has ", doc.GetPageCount(), " page(s)"));
    }
    pdf::PdfAcroForm* form = doc.GetAcroForm(true, pdf::ePdfAcroFormDefaultAppearance_None);
    pdf::PdfDictionary& form_dict = form->GetObject()->GetDictionary();
    form_dict.AddKey("SigFlags", pdf::PdfObject(static_cast<pdf::pdf_int64>(3)));
    if (form->GetNeedAppearances()) form->SetNeedAppearances(false);

    pdf::PdfPage* page = doc.GetPage(page_index);
    const pdf::PdfRect rect = look != nullptr
                                  ? pdf::PdfRect(look->x, look->y, look->width, look->height)
                                  : pdf::PdfRect(0, 0, 0, 0);
    pdf::PdfAnnotation* widget = page->CreateAnnotation(pdf::ePdfAnnotation_Widget, rect);
    widget->SetFlags(pdf::ePdfAnnotationFlags_Print | pdf::ePdfAnnotationFlags_Locked);
    pdf::PdfSignatureField field(widget, form, &doc);
    std::unique_ptr<pdf::PdfXObject> xobject;
    if (look != nullptr) {
      xobject =
          std::make_unique<pdf::PdfXObject>(pdf::PdfRect(0, 0, look->width, look->height), &doc);
      DrawAppearance(doc, *look, xobject.get());
      field.SetAppearanceStream(xobject.get());
    }
    field.SetFieldName(Utf8(name));
    if (!options.reason.empty()) field.SetSignatureReason(Utf8(options.reason));
    if (!options.location.empty()) field.SetSignatureLocation(Utf8(options.location));
    field.SetSignatureDate(pdf::PdfDate(absl::ToTimeT(options.signing_time)));

    pdf::PdfRefCountedBuffer buffer;
    pdf::PdfOutputDevice device(&buffer);
    pdf::PdfSignOutputDevice signer(&device);
    signer.SetSignatureSize(options.contents_size);
    field.SetSignature(*signer.GetSignatureBeacon());
    pdf::PdfDictionary& sig = field.GetSignatureObject()->GetDictionary();
    sig.AddKey("Filter", pdf::PdfName("Adobe.PPKLite"));
    sig.AddKey("SubFilter", pdf::PdfName("ETSI.CAdES.detached"));
    if (look != nullptr) doc.EmbedSubsetFonts();

    doc.WriteUpdate(&signer, true);
    if (!signer.HasSignaturePosition()) {
      return absl::InternalError("PDF: the signature placeholder was not written");
    }
    const pdf::PdfArray range = signer.AdjustByteRange();
    signer.Flush();
    PreparedPdf out;
    out.pdf.assign(buffer.GetBuffer(), device.GetLength());
    out.field_name = name;
    if (range.GetSize() != 4) return absl::InternalError("PDF: /ByteRange not written");
    for (size_t i = 0; i < 4; ++i) out.byte_range[i] = range[i].GetNumber();
    const auto& br = out.byte_range;
    if (br[1] <= 0 || br[2] - br[1] < 2 || br[2] > static_cast<int64_t>(out.pdf.size()) ||
        out.pdf[br[1]] != '<' || out.pdf[br[2] - 1] != '>') {
      return absl::InternalError("PDF: the /Contents placeholder is not where /ByteRange says");
    }
    // PoDoFo's beacon text becomes the zero padding a reader expects around the CMS.
    std::fill(out.pdf.begin() + br[1] + 1, out.pdf.begin() + br[2] - 1, '0');
    const std::string_view all(out.pdf);
    out.sha256 = Sha256Of(all.substr(br[0], br[1]), all.substr(br[2], br[3]));
    return out;
  });
}

absl::StatusOr<std::string> EmbedSignature(const PreparedPdf& prepared, std::string_view cms_der) {
  const auto& br = prepared.byte_range;
  const int64_t gap = br[2] - br[1];  // "<" hex ">"
  if (br[1] <= 0 || gap < 2 || br[2] > static_cast<int64_t>(prepared.pdf.size()) ||
      prepared.pdf[br[1]] != '<' || prepared.pdf[br[2] - 1] != '>') {
    return absl::InvalidArgumentError("prepared PDF: no /Contents placeholder at the byte range");
  }
  const std::string hex = absl::BytesToHexString(A(cms_der));
  if (static_cast<int64_t>(hex.size()) > gap - 2) {
    return absl::OutOfRangeError(absl::StrCat("the CMS signature (", cms_der.size(),
                                              " bytes) does not fit the ", (gap - 2) / 2,
                                              " bytes reserved"));
  }
  std::string out = prepared.pdf;
  out.replace(static_cast<size_t>(br[1] + 1), hex.size(), hex);
  return out;
}

absl::StatusOr<std::string> AddDss(std::string_view bytes, const cades::ValidationData& material) {
  QuietPodofo();
  return Guard("PDF DSS", [&]() -> absl::StatusOr<std::string> {
    pdf::PdfMemDocument doc;
    if (absl::Status s = LoadPdf(bytes, true, &doc); !s.ok()) return s;
    pdf::PdfVecObjects& objects = doc.GetObjects();
    pdf::PdfObject* catalog = doc.GetCatalog();
    pdf::PdfObject* dss = Resolve(objects, catalog->GetDictionary().GetKey("DSS"));
    if (dss == nullptr || !dss->IsDictionary()) {
      dss = objects.CreateObject(pdf::PdfDictionary());
      catalog->GetDictionary().AddKey("DSS", dss->Reference());
    }
    const auto add = [&](const char* key, const std::vector<std::string>& items) {
      pdf::PdfObject* list = Resolve(objects, dss->GetDictionary().GetKey(key));
      pdf::PdfArray array;
      std::set<std::string> present;
      if (list != nullptr && list->IsArray()) {
        array = list->GetArray();
        for (auto& item : array) {
          pdf::PdfObject* stream = Resolve(objects, &item);
          if (stream == nullptr || !stream->HasStream()) continue;
          char* data = nullptr;
          pdf::pdf_long len = 0;
          stream->GetStream()->GetFilteredCopy(&data, &len);
          present.emplace(data, static_cast<size_t>(len));
          pdf::podofo_free(data);
        }
      }
      bool changed = false;
      for (const std::string& der : items) {
        if (!present.insert(der).second) continue;
        pdf::PdfObject* stream = objects.CreateObject(pdf::PdfDictionary());
        stream->GetStream()->Set(der.data(), static_cast<pdf::pdf_long>(der.size()));
        array.push_back(stream->Reference());
        changed = true;
      }
      if (changed) dss->GetDictionary().AddKey(key, array);
    };
    add("Certs", material.certificates_der);
    add("OCSPs", material.ocsp_responses_der);
    add("CRLs", material.crls_der);

    pdf::PdfRefCountedBuffer buffer;
    pdf::PdfOutputDevice device(&buffer);
    doc.WriteUpdate(&device, true);
    return std::string(buffer.GetBuffer(), device.GetLength());
  });
}

namespace {

// The document's objects serialised, for comparing two revisions (streams decoded).
std::string Serialised(pdf::PdfObject* o) {
  std::string text;
  o->ToString(text, pdf::ePdfWriteMode_Compact);
  if (o->HasStream()) {
    char* data = nullptr;
    pdf::pdf_long len = 0;
    try {
      o->GetStream()->GetFilteredCopy(&data, &len);
      text.append(data, static_cast<size_t>(len));
    } catch (const pdf::PdfError&) {
      o->GetStream()->GetCopy(&data, &len);
      text.append(data, static_cast<size_t>(len));
    }
    pdf::podofo_free(data);
  }
  return text;
}

// Whether `later` differs from `signed_rev` in more than a DSS (and the document information,
// which a writer refreshes): every object of the signed revision must be unchanged, except the
// catalog, which may differ only by /DSS.
absl::StatusOr<bool> ChangedBeyondDss(std::string_view signed_rev, std::string_view later) {
  pdf::PdfMemDocument a, b;
  if (absl::Status s = LoadPdf(signed_rev, false, &a); !s.ok()) return s;
  if (absl::Status s = LoadPdf(later, false, &b); !s.ok()) return s;
  const pdf::PdfReference root = a.GetCatalog()->Reference();
  if (!(b.GetCatalog()->Reference() == root)) return true;
  const pdf::PdfObject* info_a = a.GetTrailer()->GetDictionary().GetKey("Info");
  for (pdf::PdfObject* oa : a.GetObjects()) {
    if (oa == nullptr) continue;
    const pdf::PdfReference ref = oa->Reference();
    if (info_a != nullptr && info_a->IsReference() && ref == info_a->GetReference()) continue;
    pdf::PdfObject* ob = b.GetObjects().GetObject(ref);
    if (ob == nullptr) return true;
    if (ref == root) {
      pdf::PdfDictionary da = oa->GetDictionary(), db = ob->GetDictionary();
      da.RemoveKey("DSS");
      db.RemoveKey("DSS");
      pdf::PdfObject ca(da), cb(db);
      if (Serialised(&ca) != Serialised(&cb)) return true;
      continue;
    }
    if (Serialised(oa) != Serialised(ob)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<PdfFacts> ReadPdf(std::string_view bytes) {
  QuietPodofo();
  return Guard("PDF", [&]() -> absl::StatusOr<PdfFacts> {
    pdf::PdfMemDocument doc;
    if (absl::Status s = LoadPdf(bytes, false, &doc); !s.ok()) return s;
    PdfFacts facts;
    facts.page_count = doc.GetPageCount();
    pdf::PdfVecObjects& objects = doc.GetObjects();
    const std::vector<int64_t> revision_ends = RevisionEnds(bytes);
    const auto size = static_cast<int64_t>(bytes.size());

    for (const auto& [field, type] : AllFields(doc)) {
      if (!(type == pdf::PdfName("Sig"))) continue;
      pdf::PdfObject* v = Resolve(objects, field->GetDictionary().GetKey("V"));
      if (v == nullptr || !v->IsDictionary()) continue;  // An empty signature field.
      const pdf::PdfDictionary& d = v->GetDictionary();
      FoundSignature sig;
      sig.field_name = FieldName(field);
      if (const pdf::PdfObject* sf = d.GetKey("SubFilter"); sf && sf->IsName()) {
        sig.sub_filter = sf->GetName().GetName();
      }
      if (const pdf::PdfObject* m = d.GetKey("M"); m && m->IsString()) {
        pdf::PdfDate date(m->GetString());
        if (date.IsValid()) sig.claimed_time = absl::FromTimeT(date.GetTime());
      }
      const pdf::PdfObject* br = d.GetKey("ByteRange");
      if (br == nullptr || !br->IsArray() || br->GetArray().GetSize() != 4) {
        sig.byte_range_problem = "no /ByteRange of four numbers";
        facts.signatures.push_back(std::move(sig));
        continue;
      }
      bool numbers = true;
      for (size_t i = 0; i < 4; ++i) {
        const pdf::PdfObject& n = br->GetArray()[i];
        if (!n.IsNumber()) {
          numbers = false;
          break;
        }
        sig.byte_range[i] = n.GetNumber();
      }
      const auto& r = sig.byte_range;
      if (!numbers || r[0] != 0 || r[1] <= 0 || r[2] <= r[1] + 1 || r[3] < 0 ||
          r[2] + r[3] > size) {
        sig.byte_range_problem = "/ByteRange does not fit the file";
        facts.signatures.push_back(std::move(sig));
        continue;
      }
      const std::string_view gap = bytes.substr(r[1], r[2] - r[1]);
      std::string raw;
      if (gap.front() != '<' || gap.back() != '>' ||
          !absl::c_all_of(gap.substr(1, gap.size() - 2),
                          [](char c) { return absl::ascii_isxdigit(c); }) ||
          gap.size() % 2 != 0) {
        sig.byte_range_problem = "the /ByteRange gap is not exactly the /Contents hex string";
      } else {
        raw = absl::HexStringToBytes(A(gap.substr(1, gap.size() - 2)));
      }
      sig.cms_der = raw.substr(0, DerLength(raw));
      sig.signed_sha256 = Sha256Of(bytes.substr(0, r[1]), bytes.substr(r[2], r[3]));
      const int64_t end = r[2] + r[3];
      if (sig.byte_range_problem.empty() &&
          std::find(revision_ends.begin(), revision_ends.end(), end) == revision_ends.end()) {
        sig.byte_range_problem = "the /ByteRange does not end at the end of a revision";
      }
      sig.byte_range_ok = sig.byte_range_problem.empty();
      facts.signatures.push_back(std::move(sig));
    }
    std::sort(facts.signatures.begin(), facts.signatures.end(),
              [](const FoundSignature& x, const FoundSignature& y) {
                return x.byte_range[2] + x.byte_range[3] < y.byte_range[2] + y.byte_range[3];
              });

    // What follows the last signed revision: nothing, or DSS updates only.
    int64_t last_end = 0;
    for (const auto& s : facts.signatures) {
      if (s.byte_range_ok) last_end = std::max(last_end, s.byte_range[2] + s.byte_range[3]);
    }
    if (last_end > 0 && last_end < size) {
      absl::StatusOr<bool> changed = ChangedBeyondDss(bytes.substr(0, last_end), bytes);
      const bool tampered = !changed.ok() || *changed;
      if (tampered) {
        for (auto& s : facts.signatures) s.unsigned_trailing_bytes = size - last_end;
      }
    }

    pdf::PdfObject* dss = Resolve(objects, doc.GetCatalog()->GetDictionary().GetKey("DSS"));
    if (dss != nullptr && dss->IsDictionary()) {
      const auto read = [&](const char* key, std::vector<std::string>* out) {
        pdf::PdfObject* list = Resolve(objects, dss->GetDictionary().GetKey(key));
        if (list == nullptr || !list->IsArray()) return;
        for (auto& item : list->GetArray()) {
          pdf::PdfObject* stream = Resolve(objects, &item);
          if (stream == nullptr || !stream->HasStream()) continue;
          char* data = nullptr;
          pdf::pdf_long len = 0;
          stream->GetStream()->GetFilteredCopy(&data, &len);
          out->emplace_back(data, static_cast<size_t>(len));
          pdf::podofo_free(data);
        }
      };
      read("Certs", &facts.dss.certificates_der);
      read("OCSPs", &facts.dss.ocsp_responses_der);
      read("CRLs", &facts.dss.crls_der);
    }
    return facts;
  });
}

absl::StatusOr<int> PageCount(std::string_view bytes) {
  QuietPodofo();
  return Guard("PDF", [&]() -> absl::StatusOr<int> {
    pdf::PdfMemDocument doc;
    if (absl::Status s = LoadPdf(bytes, false, &doc); !s.ok()) return s;
    return doc.GetPageCount();
  });
}

}  // namespace qsign::pades
