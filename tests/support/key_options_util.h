// Key options as a test writes them: JSON with Komoku's option names,
// parsed by the wire layer's parser (wire/key_options_json.h) into the
// patch Store::Define takes. A test including it links komoku_wire.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/key_options.h"
#include "wire/key_options_json.h"

namespace komoku::store::testing {

// `json` as a patch; a test's own options are valid, so a parse error
// fails the test where it is used.
inline store::KeyOptionsPatch Opts(const nlohmann::json& json) {
  Result<store::KeyOptionsPatch> patch = store::ParseKeyOptions(json);
  EXPECT_TRUE(patch.ok()) << json.dump() << ": " << patch.status().ToString();
  return patch.ok() ? *patch : store::KeyOptionsPatch{};
}

}  // namespace komoku::store::testing
