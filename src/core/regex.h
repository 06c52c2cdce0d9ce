// Regular expressions over text from others (a template in a discovery
// config, a PromQL matcher in a query): RE2's syntax, matched in time
// linear in the text whatever the pattern. A backtracking engine
// (std::regex, Python's re) takes exponential time on patterns such as
// `(a|aa)*b`, which would let one message or one query stall a thread.
//
// RE2 has no back-references and no lookarounds (refused, saying so);
// counts are at most 1000. Thread-safe: a compiled Regex is shared const.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace re2 {
class RE2;
}

namespace komoku {

class Regex {
 public:
  // `pattern` compiled, or InvalidArgument with RE2's reason (and what
  // Komoku's regular expressions cannot do when that is the reason).
  static Result<Regex> Compile(std::string_view pattern, bool case_sensitive = true);

  // Whether all of `text` matches.
  bool FullMatch(std::string_view text) const;

  // The capturing groups: (?P<name>...) groups count too.
  int groups() const;

  // One match.
  struct Match {
    size_t begin = 0, end = 0;  // of the whole match, in bytes
    // Each group's text; std::nullopt for a group that took no part.
    std::vector<std::optional<std::string_view>> groups;
  };
  // The leftmost match that begins at or after `from` (anchors and \b see
  // all of `text`), or std::nullopt.
  std::optional<Match> Search(std::string_view text, size_t from) const;

 private:
  explicit Regex(std::shared_ptr<const re2::RE2> re) : re_(std::move(re)) {}
  std::shared_ptr<const re2::RE2> re_;
};

}  // namespace komoku
