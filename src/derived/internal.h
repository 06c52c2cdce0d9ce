// Helpers shared by the files of src/derived; not part of its front door.
#pragma once

#include <string>

namespace komoku::derived {

// The Home Assistant object id of a derived topic or key: "komoku_" and
// <key>_<name> with every character outside [A-Za-z0-9_-] made '_'.
std::string DiscoveryId(const std::string& key, const std::string& name);

}  // namespace komoku::derived
