#include "wire/key_alias.h"

namespace komoku::store {

ResolvedKey ResolveKey(const Store& store, const AliasSource& aliases, const std::string& name) {
  if (!aliases || store.Contains(name)) return {name, false};
  for (const auto& [key, alias] : aliases()) {
    if (alias == name) return {key, true};
  }
  return {name, false};
}

}  // namespace komoku::store
