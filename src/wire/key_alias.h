// Aliases: a second name for a key. A device that Home Assistant discovery
// found goes on writing the key it first made after it is renamed; the
// name its new topic would make is then the key's alias (bridge/discovery.h,
// docs/mapping.md#key-names). Every request that names a key may name it by
// its alias instead (docs/http-api.md#aliases).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "store/store.h"

namespace komoku::store {

// Key -> alias, as they are now. Called from any thread, with no lock of the
// caller held.
using AliasSource = std::function<std::map<std::string, std::string>()>;

// The key a name in a request means.
struct ResolvedKey {
  std::string key;
  // Set when `key` was found by its alias (the name asked).
  bool via_alias = false;
};

// The key named `name`, when there is one: a real key always wins over an
// alias of the same text. Otherwise the key whose alias `name` is (the
// first in key order, should two keys share one). Otherwise `name` itself:
// an unknown key (NotFound follows where it must exist) or one a put
// creates. `aliases` may be empty (no aliases).
ResolvedKey ResolveKey(const Store& store, const AliasSource& aliases, const std::string& name);

}  // namespace komoku::store
