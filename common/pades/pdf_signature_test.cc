// The PDF side of PAdES against an independent judge: poppler's pdfsig must find the signatures
// valid and the document unmodified; the CMS here is made with plain OpenSSL and a software key
// (common/cades makes the real one), since only the PDF container is under test.
#include "common/pades/pdf_signature.h"

#include <gtest/gtest.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/ossl.h"
#include "common/pades/testing/test_pdfs.h"

namespace qsign::pades {
namespace {

using ::qsign::pades::testing::QpdfRewritten;
using ::qsign::pades::testing::SimplePdf;
using ::qsign::pades::testing::WithObjectStreams;

// A throwaway signer: P-256 key and a self-signed certificate.
struct SoftSigner {
  OsslPtr<EVP_PKEY> key;
  OsslPtr<X509> cert;

  static SoftSigner Make(const std::string& cn) {
    SoftSigner s;
    s.key.reset(EVP_EC_gen("P-256"));
    s.cert.reset(X509_new());
    X509_set_version(s.cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(s.cert.get()), 7);
    X509_gmtime_adj(X509_getm_notBefore(s.cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(s.cert.get()), 86400);
    X509_NAME* name = X509_get_subject_name(s.cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(s.cert.get(), name);
    X509_set_pubkey(s.cert.get(), s.key.get());
    X509_sign(s.cert.get(), s.key.get(), EVP_sha256());
    return s;
  }

  // Detached CMS over the prepared PDF's byte ranges.
  std::string Cms(const PreparedPdf& p) const {
    const auto& br = p.byte_range;
    const std::string content = p.pdf.substr(br[0], br[1]) + p.pdf.substr(br[2], br[3]);
    OsslPtr<BIO> in(BIO_new_mem_buf(content.data(), static_cast<int>(content.size())));
    OsslPtr<CMS_ContentInfo> cms(CMS_sign(cert.get(), key.get(), nullptr, in.get(),
                                          CMS_DETACHED | CMS_BINARY | CMS_NOSMIMECAP));
    OsslPtr<BIO> out(BIO_new(BIO_s_mem()));
    i2d_CMS_bio(out.get(), cms.get());
    char* data = nullptr;
    const long len = BIO_get_mem_data(out.get(), &data);
    return std::string(data, static_cast<size_t>(len));
  }

  std::string Sign(std::string_view pdf, PrepareOptions options = {}) const {
    if (options.signing_time == absl::Time()) options.signing_time = absl::Now();
    absl::StatusOr<PreparedPdf> p = PrepareSignature(pdf, options);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return "";
    absl::StatusOr<std::string> signed_pdf = EmbedSignature(*p, Cms(*p));
    EXPECT_TRUE(signed_pdf.ok()) << signed_pdf.status();
    return signed_pdf.ok() ? *signed_pdf : "";
  }
};

std::string TempPath(const std::string& name) {
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<long>(bytes.size()));
}

// Runs a command; answers its standard output.
std::string Shell(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  pclose(p);
  return out;
}

std::string Pdfsig(std::string_view pdf, const std::string& name) {
  const std::string path = TempPath(name);
  WriteFile(path, pdf);
  return Shell("pdfsig " + path);
}

int Count(std::string_view haystack, std::string_view needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class PdfSignatureTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string Original() const {
    const std::string base = SimplePdf(3, "Ugovor o radu");
    if (GetParam() == "qpdf-object-streams") return WithObjectStreams(base);
    if (GetParam() == "qpdf-classic") return QpdfRewritten(base);
    return base;
  }
  SoftSigner ana_ = SoftSigner::Make("Ana Petrovic");
  SoftSigner marko_ = SoftSigner::Make("Marko Jovanovic");
};

TEST_P(PdfSignatureTest, OneSignatureIsValidAndCoversTheWholeDocument) {
  const std::string original = Original();
  const std::string signed_pdf = ana_.Sign(original);
  ASSERT_FALSE(signed_pdf.empty());
  EXPECT_TRUE(signed_pdf.starts_with(original)) << "not an incremental update";

  const std::string report = Pdfsig(signed_pdf, GetParam() + "-one.pdf");
  EXPECT_TRUE(absl::StrContains(report, "Signature Validation: Signature is Valid.")) << report;
  EXPECT_TRUE(absl::StrContains(report, "Total document signed")) << report;
  EXPECT_TRUE(absl::StrContains(report, "ETSI.CAdES.detached")) << report;

  absl::StatusOr<PdfFacts> facts = ReadPdf(signed_pdf);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->page_count, 3);
  ASSERT_EQ(facts->signatures.size(), 1u);
  const FoundSignature& s = facts->signatures[0];
  EXPECT_TRUE(s.byte_range_ok) << s.byte_range_problem;
  EXPECT_EQ(s.sub_filter, "ETSI.CAdES.detached");
  EXPECT_EQ(s.field_name, "Signature1");
  EXPECT_EQ(s.unsigned_trailing_bytes, 0);
  EXPECT_EQ(s.byte_range[2] + s.byte_range[3], static_cast<int64_t>(signed_pdf.size()));
  EXPECT_FALSE(s.cms_der.empty());
  EXPECT_EQ(static_cast<uint8_t>(s.cms_der[0]), 0x30);
  EXPECT_TRUE(s.claimed_time.has_value());
}

TEST_P(PdfSignatureTest, SecondSignatureLeavesTheFirstValid) {
  const std::string once = ana_.Sign(Original());
  const std::string twice = marko_.Sign(once);
  ASSERT_FALSE(twice.empty());
  EXPECT_TRUE(twice.starts_with(once));

  const std::string report = Pdfsig(twice, GetParam() + "-two.pdf");
  EXPECT_EQ(Count(report, "Signature Validation: Signature is Valid."), 2) << report;
  EXPECT_TRUE(absl::StrContains(report, "Signature #2")) << report;
  EXPECT_EQ(Count(report, "Total document signed"), 1) << report;  // The second only.

  absl::StatusOr<PdfFacts> facts = ReadPdf(twice);
  ASSERT_TRUE(facts.ok()) << facts.status();
  ASSERT_EQ(facts->signatures.size(), 2u);
  EXPECT_EQ(facts->signatures[0].field_name, "Signature1");
  EXPECT_EQ(facts->signatures[1].field_name, "Signature2");
  for (const auto& s : facts->signatures) {
    EXPECT_TRUE(s.byte_range_ok) << s.byte_range_problem;
    EXPECT_EQ(s.unsigned_trailing_bytes, 0);
  }
}

TEST_P(PdfSignatureTest, TamperedBytesAreReportedByPdfsig) {
  std::string signed_pdf = ana_.Sign(Original());
  absl::StatusOr<PdfFacts> before = ReadPdf(signed_pdf);
  ASSERT_TRUE(before.ok()) << before.status();
  // Change one letter of the page text inside the signed range ("Ugovor" -> "Ugovir" would need
  // an uncompressed stream; the PDF header's version digit is inside the range and harmless).
  signed_pdf[7] = signed_pdf[7] == '4' ? '5' : '4';
  const std::string report = Pdfsig(signed_pdf, GetParam() + "-tampered.pdf");
  EXPECT_FALSE(absl::StrContains(report, "Signature is Valid.")) << report;
  absl::StatusOr<PdfFacts> after = ReadPdf(signed_pdf);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->signatures.size(), 1u);
  EXPECT_NE(after->signatures[0].signed_sha256, before->signatures[0].signed_sha256);
}

INSTANTIATE_TEST_SUITE_P(Producers, PdfSignatureTest,
                         ::testing::Values("podofo", "qpdf-classic", "qpdf-object-streams"));

TEST(PdfSignature, DssUpdateKeepsSignatureAndIsNotAChange) {
  const SoftSigner ana = SoftSigner::Make("Ana Petrovic");
  const std::string signed_pdf = ana.Sign(WithObjectStreams(SimplePdf(1, "DSS")));
  cades::ValidationData material;
  material.certificates_der.push_back(ToDer(ana.cert.get(), i2d_X509));
  material.ocsp_responses_der.push_back(
      "\x30\x03\x0a\x01\x06");  // OCSPResponse unauthorized; bytes only.
  absl::StatusOr<std::string> with_dss = AddDss(signed_pdf, material);
  ASSERT_TRUE(with_dss.ok()) << with_dss.status();
  EXPECT_TRUE(with_dss->starts_with(signed_pdf));
  // A second DSS update with the same data adds nothing new to the DSS.
  absl::StatusOr<std::string> again = AddDss(*with_dss, material);
  ASSERT_TRUE(again.ok()) << again.status();

  const std::string report = Pdfsig(*again, "dss.pdf");
  EXPECT_TRUE(absl::StrContains(report, "Signature Validation: Signature is Valid.")) << report;

  absl::StatusOr<PdfFacts> facts = ReadPdf(*again);
  ASSERT_TRUE(facts.ok()) << facts.status();
  ASSERT_EQ(facts->signatures.size(), 1u);
  EXPECT_EQ(facts->signatures[0].unsigned_trailing_bytes, 0);
  EXPECT_EQ(facts->dss.certificates_der, material.certificates_der);
  EXPECT_EQ(facts->dss.ocsp_responses_der, material.ocsp_responses_der);
  EXPECT_TRUE(facts->dss.crls_der.empty());
}

TEST(PdfSignature, ChangeAfterSigningIsReported) {
  const SoftSigner ana = SoftSigner::Make("Ana Petrovic");
  const std::string signed_pdf = ana.Sign(SimplePdf(1, "Iznos: 100 EUR"));
  // An incremental update that adds a page: the signed revision is intact, the document is not.
  const std::string changed = testing::AppendPage(signed_pdf);
  const std::string path = TempPath("changed.pdf");
  WriteFile(path, changed);
  ASSERT_GT(changed.size(), signed_pdf.size());
  absl::StatusOr<PdfFacts> facts = ReadPdf(changed);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->page_count, 2);
  ASSERT_EQ(facts->signatures.size(), 1u);
  EXPECT_TRUE(facts->signatures[0].byte_range_ok);
  EXPECT_EQ(facts->signatures[0].unsigned_trailing_bytes,
            static_cast<int64_t>(changed.size() - signed_pdf.size()));
  const std::string report = Shell("pdfsig " + path);
  EXPECT_TRUE(absl::StrContains(report, "Not total document signed")) << report;
}

TEST(PdfSignature, VisibleAppearanceEmbedsAFontWithCyrillicAndLatin) {
  const SoftSigner ana = SoftSigner::Make("Ana Petrovic");
  PrepareOptions options;
  options.appearance = Appearance{.signer_name = "Ана Петровић · Ana Petrović",
                                  .detail = "Потписано 2026-12-05 · đžćčš ЂЖЋЧШЉЊЏ"};
  const std::string signed_pdf = ana.Sign(SimplePdf(1, "Visible"), options);
  ASSERT_FALSE(signed_pdf.empty());
  const std::string path = TempPath("visible.pdf");
  WriteFile(path, signed_pdf);
  EXPECT_TRUE(absl::StrContains(Shell("pdfsig " + path), "Signature is Valid."));
  // pdffonts lists fonts of annotation appearances too: DejaVu, embedded, subset, Identity-H.
  const std::string fonts = Shell("pdffonts " + path);
  EXPECT_TRUE(absl::StrContains(fonts, "DejaVuSans")) << fonts;
  EXPECT_TRUE(absl::StrContains(fonts, "Identity-H")) << fonts;
  EXPECT_TRUE(absl::StrContains(fonts, "yes yes")) << fonts;  // emb, sub.
  // Poppler renders the letters: the box is not blank (a missing glyph would render nothing
  // with an embedded subset that lacks it).
  const std::string ppm = TempPath("visible");
  Shell(absl::StrCat("pdftoppm -r 72 -gray -x 36 -y ", 842 - 90, " -W 240 -H 54 ", path, " ", ppm));
  std::ifstream img(ppm + "-1.pgm", std::ios::binary);
  const std::string pgm((std::istreambuf_iterator<char>(img)), std::istreambuf_iterator<char>());
  ASSERT_GT(pgm.size(), 240u * 54u);
  int dark = 0;
  for (size_t i = pgm.size() - 240 * 54; i < pgm.size(); ++i) {
    if (static_cast<uint8_t>(pgm[i]) < 128) ++dark;
  }
  EXPECT_GT(dark, 400) << "the appearance renders (almost) nothing";
}

TEST(PdfSignature, AppearanceNamesTheSignerAsTheCertificateDoes) {
  const SoftSigner ana = SoftSigner::Make("Ана Петровић");
  const Appearance a = AppearanceFor(ToDer(ana.cert.get(), i2d_X509), absl::FromUnixSeconds(0));
  EXPECT_EQ(a.signer_name, "Ана Петровић");
  EXPECT_EQ(a.detail, "Потписано / Signed 1970-01-01 00:00 UTC");
}

TEST(PdfSignature, RefusesWhatIsNotAPdfAndTooLargeSignatures) {
  EXPECT_EQ(PrepareSignature("hello", {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrepareSignature("%PDF-1.4\n garbage", {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  PrepareOptions options;
  options.appearance = Appearance{.signer_name = "X", .page = 4};
  EXPECT_EQ(PrepareSignature(SimplePdf(1, "x"), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  PrepareOptions small;
  small.contents_size = 1024;
  absl::StatusOr<PreparedPdf> p = PrepareSignature(SimplePdf(1, "x"), small);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(EmbedSignature(*p, std::string(1025, 'x')).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(PageCount(SimplePdf(5, "x")).value_or(0), 5);
}

}  // namespace
}  // namespace qsign::pades
