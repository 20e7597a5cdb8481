#include "common/pades/testing/test_pdfs.h"

#include <podofo/podofo.h>

#include <memory>
#include <qpdf/QPDF.hh>
#include <qpdf/QPDFWriter.hh>
#include <string>

namespace qsign::pades::testing {
namespace {

std::string Rewrite(std::string_view pdf, bool object_streams) {
  QPDF q;
  q.processMemoryFile("input.pdf", pdf.data(), pdf.size());
  QPDFWriter w(q);
  w.setOutputMemory();
  w.setStaticID(true);
  w.setObjectStreamMode(object_streams ? qpdf_o_generate : qpdf_o_disable);
  w.write();
  std::shared_ptr<Buffer> out(w.getBufferSharedPointer());
  return std::string(reinterpret_cast<const char*>(out->getBuffer()), out->getSize());
}

}  // namespace

std::string SimplePdf(int pages, std::string_view text) {
  PoDoFo::PdfError::EnableDebug(false);
  PoDoFo::PdfError::EnableLogging(false);
  PoDoFo::PdfMemDocument doc;
  for (int i = 1; i <= pages; ++i) {
    PoDoFo::PdfPage* page =
        doc.CreatePage(PoDoFo::PdfPage::CreateStandardPageSize(PoDoFo::ePdfPageSize_A4));
    PoDoFo::PdfPainter painter;
    painter.SetPage(page);
    PoDoFo::PdfFont* font = doc.CreateFont("Helvetica");
    font->SetFontSize(14);
    painter.SetFont(font);
    painter.DrawText(72, 760, PoDoFo::PdfString(std::string(text).c_str()));
    painter.DrawText(72, 740, PoDoFo::PdfString(("page " + std::to_string(i)).c_str()));
    painter.FinishPage();
  }
  PoDoFo::PdfRefCountedBuffer buffer;
  PoDoFo::PdfOutputDevice device(&buffer);
  doc.Write(&device);
  return std::string(buffer.GetBuffer(), device.GetLength());
}

std::string AppendPage(std::string_view pdf) {
  PoDoFo::PdfMemDocument doc;
  doc.LoadFromBuffer(pdf.data(), static_cast<long>(pdf.size()), true);
  doc.CreatePage(PoDoFo::PdfPage::CreateStandardPageSize(PoDoFo::ePdfPageSize_A4));
  PoDoFo::PdfRefCountedBuffer buffer;
  PoDoFo::PdfOutputDevice device(&buffer);
  doc.WriteUpdate(&device, true);
  return std::string(buffer.GetBuffer(), device.GetLength());
}

std::string WithObjectStreams(std::string_view pdf) { return Rewrite(pdf, true); }

std::string QpdfRewritten(std::string_view pdf) { return Rewrite(pdf, false); }

}  // namespace qsign::pades::testing
