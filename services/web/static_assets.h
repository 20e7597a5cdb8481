// The files under services/web/static/, compiled in (cmake/embed_files.cmake): the pages'
// scripts and style sheet, served at /static/<name>. No CDN, no build step beyond CMake.
#ifndef QSIGN_SERVICES_WEB_STATIC_ASSETS_H_
#define QSIGN_SERVICES_WEB_STATIC_ASSETS_H_

#include <string_view>
#include <utility>
#include <vector>

namespace qsign::web {

// (file name, content), sorted by name.
const std::vector<std::pair<std::string_view, std::string_view>>& StaticFiles();

}  // namespace qsign::web

#endif  // QSIGN_SERVICES_WEB_STATIC_ASSETS_H_
