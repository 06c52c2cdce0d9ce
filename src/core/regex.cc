#include "core/regex.h"

#include <re2/re2.h>

#include <cctype>

namespace komoku {
namespace {

constexpr long kMaxCount = 1000;  // RE2's own bound

// RE2 reads a count it cannot parse as a number ("a{88888888888888888888}")
// as literal text, where Python and Go refuse it: the counts of `pattern`,
// outside classes and escapes, over 1000, refused here first.
Status CheckCounts(std::string_view pattern) {
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\') {
      ++i;  // an escaped character starts nothing
    } else if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
      // "[]...]" and "[^]...]": the first ']' is a member.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') ++i;
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') ++i;
    } else if (c == '{') {
      // {n}, {n,} or {n,m}; anything else is literal text.
      size_t j = i + 1;
      bool too_big = false;
      for (int number = 0; number < 2; ++number) {
        const size_t start = j;
        while (j < pattern.size() && std::isdigit(static_cast<unsigned char>(pattern[j]))) ++j;
        if (j - start > 4 ||
            (j > start && std::stol(std::string(pattern.substr(start, j - start))) > kMaxCount)) {
          too_big = true;
        }
        if (number == 0 && (j == start || j >= pattern.size() || pattern[j] != ',')) break;
        if (number == 0) ++j;  // the comma
      }
      if (too_big && j < pattern.size() && pattern[j] == '}') {
        return Status::InvalidArgument(
            "invalid repetition size: " + std::string(pattern.substr(i, j + 1 - i)) +
            " (counts are at most 1000)");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Regex> Regex::Compile(std::string_view pattern, bool case_sensitive) {
  KOMOKU_RETURN_IF_ERROR(CheckCounts(pattern));
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_case_sensitive(case_sensitive);
  // Patterns here are short; a megabyte bounds what each may build.
  options.set_max_mem(1 << 20);
  auto re =
      std::make_shared<const re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok()) {
    std::string why = re->error();
    const std::string& arg = re->error_arg();
    const bool back_reference = re->error_code() == re2::RE2::ErrorBadEscape && arg.size() >= 2 &&
                                std::isdigit(static_cast<unsigned char>(arg[1]));
    if (back_reference || re->error_code() == re2::RE2::ErrorBadPerlOp) {
      why += " (Komoku's regular expressions, RE2's, have no back-references or lookarounds)";
    } else if (re->error_code() == re2::RE2::ErrorRepeatSize) {
      why += " (counts are at most 1000)";
    }
    return Status::InvalidArgument(why);
  }
  return Regex(std::move(re));
}

bool Regex::FullMatch(std::string_view text) const {
  return re2::RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

int Regex::groups() const { return re_->NumberOfCapturingGroups(); }

std::optional<Regex::Match> Regex::Search(std::string_view text, size_t from) const {
  if (from > text.size()) return std::nullopt;
  const int n = re_->NumberOfCapturingGroups() + 1;
  std::vector<re2::StringPiece> pieces(static_cast<size_t>(n));
  if (!re_->Match(re2::StringPiece(text.data(), text.size()), from, text.size(),
                  re2::RE2::UNANCHORED, pieces.data(), n)) {
    return std::nullopt;
  }
  Match m;
  m.begin = static_cast<size_t>(pieces[0].data() - text.data());
  m.end = m.begin + pieces[0].size();
  m.groups.reserve(static_cast<size_t>(n - 1));
  for (int g = 1; g < n; ++g) {
    const re2::StringPiece& p = pieces[static_cast<size_t>(g)];
    if (p.data() == nullptr) {
      m.groups.emplace_back(std::nullopt);
    } else {
      m.groups.emplace_back(std::string_view(p.data(), p.size()));
    }
  }
  return m;
}

}  // namespace komoku
