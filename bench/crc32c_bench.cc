// CRC-32C of an ingest log record (~64 bytes), a small block (1 KiB) and a
// large one (64 KiB): the CPU's instruction, as Komoku uses it where the CPU
// has one, beside the tables (the baseline, and what runs elsewhere), in the
// same run (docs/benchmarks.md, "CRC-32C").
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "common/crc32c.h"

namespace {

std::vector<unsigned char> Bytes(size_t n) {
  std::mt19937_64 rng(5);
  std::vector<unsigned char> b(n);
  for (auto& x : b) x = static_cast<unsigned char>(rng());
  return b;
}

void BM_Tables(benchmark::State& state) {
  const auto b = Bytes(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    benchmark::DoNotOptimize(komoku::crc32c_internal::Portable(b.data(), b.size(), 0));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

void BM_Crc32c(benchmark::State& state) {
  const auto b = Bytes(static_cast<size_t>(state.range(0)));
  state.SetLabel(komoku::crc32c_internal::InHardware() ? "CPU instruction" : "tables");
  for (auto _ : state) benchmark::DoNotOptimize(komoku::Crc32c(b.data(), b.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

BENCHMARK(BM_Tables)->Arg(64)->Arg(1024)->Arg(65536);
BENCHMARK(BM_Crc32c)->Arg(64)->Arg(1024)->Arg(65536);

}  // namespace

BENCHMARK_MAIN();
