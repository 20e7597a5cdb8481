#include "services/web/html.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/http/html.h"

namespace qsign::web {

std::string Esc(std::string_view text) { return http::HtmlEscape(text); }

std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      // Never "</script>" or "<!--" inside a script element.
      case '<':
        out += "\\u003c";
        break;
      case '>':
        out += "\\u003e";
        break;
      case '&':
        out += "\\u0026";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += "\"";
  return out;
}

namespace {

std::string_view AreaName(Area area) {
  switch (area) {
    case Area::kPortal:
      return "portal";
    case Area::kApp:
      return "app";
    case Area::kOffice:
      return "office";
  }
  return "portal";
}

std::string Nav(const Frame& f) {
  std::string links;
  switch (f.area) {
    case Area::kPortal:
      if (f.signed_in) {
        Append(&links, "<a href=\"/account\">", Esc(T(f.lang, "nav.account")), "</a>",
               "<a href=\"/contract\">", Esc(T(f.lang, "nav.contract")), "</a>",
               "<a href=\"/sign\">", Esc(T(f.lang, "nav.sign")), "</a>");
      } else {
        Append(&links, "<a href=\"/login\">", Esc(T(f.lang, "nav.login")), "</a>",
               "<a href=\"/register\">", Esc(T(f.lang, "nav.register")), "</a>");
      }
      break;
    case Area::kApp:
      break;
    case Area::kOffice:
      if (f.signed_in) {
        Append(&links, "<a href=\"/office\">", Esc(T(f.lang, "office.find")), "</a>");
      }
      break;
  }
  std::string out = Cat("<nav class=\"nav\">", links);
  if (f.signed_in) {
    const std::string action = f.area == Area::kOffice ? "/office/logout" : "/logout";
    Append(&out, "<span class=\"who\" id=\"who\">", Esc(f.who), "</span>",
           Form(f, action,
                Cat("<button type=\"submit\" id=\"logout\" class=\"link\">",
                    Esc(T(f.lang, "nav.logout")), "</button>"),
                "class=\"inline\""));
  }
  out += "</nav>";
  return out;
}

std::string LangSwitch(const Frame& f) {
  std::string out = "<div class=\"langs\">";
  for (Lang l : AllLangs()) {
    const std::string tag(LangTag(l));
    if (l == f.lang) {
      Append(&out, "<strong lang=\"", tag, "\">", Esc(T(l, "lang.name")), "</strong>");
    } else {
      Append(&out, "<a lang=\"", tag, "\" id=\"lang-", tag, "\" href=\"/lang?to=", tag,
             "&amp;next=", Esc(f.path), "\">", Esc(T(l, "lang.name")), "</a>");
    }
  }
  out += "</div>";
  return out;
}

}  // namespace

std::string Hidden(std::string_view name, std::string_view value) {
  return Cat("<input type=\"hidden\" name=\"", name, "\" value=\"", Esc(value), "\">");
}

std::string Form(const Frame& frame, std::string_view action, std::string_view inner,
                 std::string_view extra_attributes) {
  return Cat("<form method=\"post\" action=\"", Esc(action), "\" ", extra_attributes,
             "><input type=\"hidden\" name=\"csrf\" value=\"", Esc(frame.csrf), "\">", inner,
             "</form>");
}

std::string Page(const Frame& f, std::string_view title, std::string_view body) {
  const std::string_view area = AreaName(f.area);
  std::string texts = "{";
  for (size_t i = 0; i < f.js_texts.size(); ++i) {
    Append(&texts, i ? "," : "", JsonString(f.js_texts[i]), ":",
           JsonString(T(f.lang, f.js_texts[i])));
  }
  texts += "}";
  std::string out = Cat(
      "<!doctype html>\n<html lang=\"", LangTag(f.lang), "\"><head><meta charset=\"utf-8\">",
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
      "<meta name=\"csrf-token\" content=\"", Esc(f.csrf), "\">", "<title>", Esc(title), " — ",
      Esc(T(f.lang, Cat(area, ".title"))), "</title>",
      "<link rel=\"stylesheet\" href=\"/static/style.css\"><link rel=\"icon\" href=\"data:,\">");
  if (!f.script.empty()) {
    Append(&out, "<script type=\"application/json\" id=\"texts\">", texts, "</script>",
           "<script src=\"/static/", f.script, "\" defer></script>");
  }
  Append(&out, "</head><body class=\"", area, "\"><header><span class=\"brand\">",
         Esc(T(f.lang, Cat(area, ".title"))), "</span>", Nav(f), LangSwitch(f), "</header><main>");
  if (!f.flash.empty()) {
    Append(&out, "<p class=\"flash", f.flash_error ? " error" : "", "\" id=\"flash\">",
           Esc(f.flash), "</p>");
  }
  Append(&out, "<h1>", Esc(title), "</h1>", body, "</main></body></html>\n");
  return out;
}

}  // namespace qsign::web
