// Staleness of keys with a stale_after option (docs/derived.md).
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "derived/publisher_impl.h"

namespace komoku::derived {

void Publisher::Impl::RunStale(int64_t now) {
  if (now >= next_stale_scan_) {
    std::map<std::string, int64_t> wanted;
    for (const store::KeyInfo& k : store_->Keys()) {
      if (k.options.stale_after_ms > 0) wanted[k.name] = k.options.stale_after_ms;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = stale_.begin(); it != stale_.end();) {
      it = wanted.count(it->first) ? std::next(it) : stale_.erase(it);
    }
    for (const auto& [key, after] : wanted) {
      Stale& s = stale_[key];
      if (s.after_ms != after) s.check_at = 0;
      s.after_ms = after;
    }
    next_stale_scan_ = now + kStaleRescanMs;
  }
  std::vector<std::pair<std::string, int64_t>> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, s] : stale_) {
      if (s.check_at <= now) due.push_back({key, s.after_ms});
    }
  }
  for (const auto& [key, after] : due) {
    EnsureCommitted();
    Result<store::KeyInfo> info = store_->Get(key);
    if (!info.ok()) continue;  // deleted; the next scan forgets it
    // The rule history uses: a value is unknown from its change + stale_after.
    const bool stale = !info->last || now >= info->last->time_ms + after;
    bool publish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = stale_.find(key);
      if (it == stale_.end()) continue;
      Stale& s = it->second;
      publish = !s.published || *s.published != stale;
      s.published = stale;
      s.check_at = stale ? kNever : info->last->time_ms + after;
    }
    if (!publish) continue;
    Message m;
    m.topic = derived_prefix_ + key + "/stale";
    m.payload = stale ? "true" : "false";
    m.retain = options_.retain;
    Enqueue(std::move(m));
  }
}

}  // namespace komoku::derived
