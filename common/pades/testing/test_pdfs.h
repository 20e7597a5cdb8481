// Small real PDFs for tests, in several producers' styles: written by PoDoFo (classic xref
// table), and rewritten by qpdf with object streams (and so a cross-reference stream).
#ifndef QSIGN_COMMON_PADES_TESTING_TEST_PDFS_H_
#define QSIGN_COMMON_PADES_TESTING_TEST_PDFS_H_

#include <string>
#include <string_view>

namespace qsign::pades::testing {

// A PDF with `pages` pages, each showing `text` (Latin-1 only) and its page number.
std::string SimplePdf(int pages, std::string_view text);

// `pdf` rewritten by qpdf with its objects in object streams and a cross-reference stream.
std::string WithObjectStreams(std::string_view pdf);

// `pdf` with one more (empty) page, added as an incremental update: a change after signing.
std::string AppendPage(std::string_view pdf);

// `pdf` rewritten by qpdf with a classic cross-reference table, no object streams.
std::string QpdfRewritten(std::string_view pdf);

}  // namespace qsign::pades::testing

#endif  // QSIGN_COMMON_PADES_TESTING_TEST_PDFS_H_
