// Regular expressions as Komoku uses them: RE2 through core/regex.h (now)
// beside libstdc++'s std::regex (the engine it replaced, the baseline), in
// the same run (docs/benchmarks.md, "Regular expressions"):
// - a template's regex_findall over a short state text, the pattern
//   compiled once (templates cache theirs);
// - a PromQL matcher over 1,000 key names, and its compilation (each query
//   compiles its own);
// - (a|aa)*b on n a's, which a backtracking engine takes exponential time
//   over.
#include <benchmark/benchmark.h>

#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/regex.h"

namespace {

const char kFindPattern[] = "(\\d+)\\.(\\d+)";
const char kFindText[] = "firmware 21.5 on board rev 3.25, uptime 1234";

void BM_FindAllStdRegex(benchmark::State& state) {
  const std::regex re(kFindPattern);
  const std::string text = kFindText;
  for (auto _ : state) {
    size_t n = 0;
    for (auto m = std::sregex_iterator(text.begin(), text.end(), re); m != std::sregex_iterator();
         ++m) {
      n += m->str(1).size();
    }
    benchmark::DoNotOptimize(n);
  }
}

void BM_FindAllRe2(benchmark::State& state) {
  const komoku::Regex re = *komoku::Regex::Compile(kFindPattern);
  const std::string text = kFindText;
  for (auto _ : state) {
    size_t n = 0;
    size_t at = 0;
    while (std::optional<komoku::Regex::Match> m = re.Search(text, at)) {
      n += m->groups[0] ? m->groups[0]->size() : 0;
      at = m->end > m->begin ? m->end : m->end + 1;
    }
    benchmark::DoNotOptimize(n);
  }
}

std::vector<std::string> KeyNames() {
  std::vector<std::string> keys;
  const char* const rooms[] = {"kitchen", "hall", "bedroom", "attic", "garage"};
  for (int i = 0; i < 1000; ++i) {
    keys.push_back(std::string("zigbee2mqtt/") + rooms[i % 5] + "_sensor_" + std::to_string(i) +
                   (i % 2 ? "/temperature" : "/humidity"));
  }
  return keys;
}

const char kMatcher[] = "zigbee2mqtt/kitchen.*/temp.*";

void BM_MatcherStdRegex(benchmark::State& state) {
  const std::regex re(kMatcher);
  const std::vector<std::string> keys = KeyNames();
  for (auto _ : state) {
    size_t n = 0;
    for (const std::string& k : keys) n += std::regex_match(k, re) ? 1 : 0;
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 1000);
}

void BM_MatcherRe2(benchmark::State& state) {
  const komoku::Regex re = *komoku::Regex::Compile(kMatcher);
  const std::vector<std::string> keys = KeyNames();
  for (auto _ : state) {
    size_t n = 0;
    for (const std::string& k : keys) n += re.FullMatch(k) ? 1 : 0;
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 1000);
}

void BM_CompileStdRegex(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(std::regex(kMatcher));
}

void BM_CompileRe2(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(komoku::Regex::Compile(kMatcher));
}

void BM_BacktrackStdRegex(benchmark::State& state) {
  const std::regex re("(a|aa)*b");
  const std::string text(static_cast<size_t>(state.range(0)), 'a');
  for (auto _ : state) benchmark::DoNotOptimize(std::regex_search(text, re));
}

void BM_BacktrackRe2(benchmark::State& state) {
  const komoku::Regex re = *komoku::Regex::Compile("(a|aa)*b");
  const std::string text(static_cast<size_t>(state.range(0)), 'a');
  for (auto _ : state) benchmark::DoNotOptimize(re.Search(text, 0));
}

BENCHMARK(BM_FindAllStdRegex);
BENCHMARK(BM_FindAllRe2);
BENCHMARK(BM_MatcherStdRegex);
BENCHMARK(BM_MatcherRe2);
BENCHMARK(BM_CompileStdRegex);
BENCHMARK(BM_CompileRe2);
BENCHMARK(BM_BacktrackStdRegex)->Arg(16)->Arg(20)->Arg(24)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BacktrackRe2)->Arg(16)->Arg(20)->Arg(24)->Arg(4000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
