// How the hot store's keys table keeps a key's options: JSON text in the
// `options` column, the same form the API answers (wire/key_options_json.h)
// so that every database written since the first schema reads unchanged:
// {"same_value_resolution": 60, "max_time": 60, ...}, durations in seconds,
// an option absent where it has its default (max_time only for uptime keys,
// reset_tolerance only for counters). This is the hot store's own file
// format, as the MANIFEST is the cold store's; the options' parser for what
// users send is the wire layer's.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "core/key_options.h"
#include "core/value.h"

namespace komoku::store {

// The text the keys table keeps for `options` of a key of `type`.
std::string EncodeStoredOptions(const KeyOptions& options, KeyType type);

// The options `text` holds for a key of `type`. Refused (Corruption) with
// what is wrong when the text is not such an object: not JSON, an unknown
// option, a value of the wrong kind or out of range.
Result<KeyOptions> DecodeStoredOptions(std::string_view text, KeyType type);

}  // namespace komoku::store
