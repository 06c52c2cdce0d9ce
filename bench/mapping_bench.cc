// Topic mapping benchmark (Google Benchmark): the zigbee2mqtt example
// message (docs/mapping.md) through the full example rule set of
// config/komoku.yaml, beside a bare nlohmann::json::parse of the same payload
// measured in the same run, on one core. After the run a line prints
// mapping's rate divided by the bare parse rate (the aim: at least 0.8 --
// the rules add little on top of parsing). Also a text payload (ESPHome,
// matched by a later rule), a topic no rule matches, and the same
// zigbee2mqtt message read by discovered entities instead of rules (its
// three Home Assistant configs), for scale.
// Benchmarks never fail for being slow; the figures are for
// docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "app/config.h"
#include "bridge/discovery.h"
#include "bridge/mapping.h"

namespace {

using komoku::bridge::MappingEngine;

constexpr char kTopic[] = "zigbee2mqtt/kitchen_sensor";
constexpr char kPayload[] =
    R"({"temperature":21.43,"humidity":48.1,"battery":97,"linkquality":120})";
constexpr int64_t kNow = 1795306000000;

const MappingEngine& Engine() {
  static const std::unique_ptr<MappingEngine> engine = [] {
    komoku::Result<komoku::app::Config> config =
        komoku::app::ParseConfig(komoku::app::MappingExampleYaml(), "example");
    if (!config.ok()) {
      std::fprintf(stderr, "mapping_bench: %s\n", config.status().ToString().c_str());
      std::exit(1);
    }
    auto compiled = MappingEngine::Compile(config->mappings);
    if (!compiled.ok()) {
      std::fprintf(stderr, "mapping_bench: %s\n", compiled.status().ToString().c_str());
      std::exit(1);
    }
    return std::move(compiled.value());
  }();
  return *engine;
}

void BM_JsonParse(benchmark::State& state) {
  const std::string payload = kPayload;
  for (auto _ : state) {
    nlohmann::json j = nlohmann::json::parse(payload);
    benchmark::DoNotOptimize(j);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_MapZigbee2mqtt(benchmark::State& state) {
  const MappingEngine& engine = Engine();
  const std::string topic = kTopic, payload = kPayload;
  if (engine.Map(topic, payload, kNow).changes.size() != 3) {
    state.SkipWithError("the example no longer maps to 3 changes");
    return;
  }
  for (auto _ : state) {
    komoku::bridge::MappingResult r = engine.Map(topic, payload, kNow);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// The bridge's way: one result reused for every message (MapInto), so the
// keys' buffers and the vectors are allocated once.
void BM_MapZigbee2mqttReused(benchmark::State& state) {
  const MappingEngine& engine = Engine();
  const std::string topic = kTopic, payload = kPayload;
  komoku::bridge::MappingResult r;
  for (auto _ : state) {
    engine.MapInto(topic, payload, kNow, &r);
    benchmark::DoNotOptimize(r);
  }
  if (r.changes.size() != 3) state.SkipWithError("the example no longer maps to 3 changes");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_MapEsphomeText(benchmark::State& state) {
  const MappingEngine& engine = Engine();
  const std::string topic = "livingroom/sensor/temperature/state", payload = "21.50";
  for (auto _ : state) {
    komoku::bridge::MappingResult r = engine.Map(topic, payload, kNow);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_MapNoMatch(benchmark::State& state) {
  const MappingEngine& engine = Engine();
  const std::string topic = "garage/door/contact/raw/value", payload = "1";
  for (auto _ : state) {
    komoku::bridge::MappingResult r = engine.Map(topic, payload, kNow);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

// The kitchen sensor announced to Home Assistant (as zigbee2mqtt does) and
// no rules: three entities read the topic, each its own field (MapEach),
// with one result reused as the bridge does.
void BM_MapDiscoveredZigbee2mqtt(benchmark::State& state) {
  komoku::bridge::Discovery discovery{komoku::bridge::DiscoveryOptions{}};
  for (const char* field : {"temperature", "humidity", "battery"}) {
    const std::string config = std::string(R"({"state_topic":"zigbee2mqtt/kitchen_sensor",)") +
                               R"("state_class":"measurement","unit_of_measurement":"x",)" +
                               R"("value_template":"{{ value_json.)" + field + R"( }}"})";
    discovery.Handle(std::string("homeassistant/sensor/0x00158d0001a2b3c4/") + field + "/config",
                     config);
  }
  const std::string topic = kTopic, payload = kPayload;
  komoku::bridge::Discovery::Mapped d;
  for (auto _ : state) {
    discovery.MapInto(topic, payload, kNow, &d);
    benchmark::DoNotOptimize(d);
  }
  if (d.result.changes.size() != 3) state.SkipWithError("the entities no longer map 3 changes");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

BENCHMARK(BM_JsonParse);
BENCHMARK(BM_MapZigbee2mqtt);
BENCHMARK(BM_MapZigbee2mqttReused);
BENCHMARK(BM_MapEsphomeText);
BENCHMARK(BM_MapNoMatch);
BENCHMARK(BM_MapDiscoveredZigbee2mqtt);

// Remembers each benchmark's items/s for the ratio line. On a busy machine
// run with --benchmark_repetitions=9: the ratio then uses the medians.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      auto it = run.counters.find("items_per_second");
      if (run.error_occurred || it == run.counters.end()) continue;
      // With --benchmark_repetitions, the median of the repetitions.
      if (run.run_type == Run::RT_Iteration || run.aggregate_name == "median") {
        rates_[run.run_name.function_name] = it->second.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
  double Rate(const std::string& name) const {
    auto it = rates_.find(name);
    return it == rates_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> rates_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  const double map = reporter.Rate("BM_MapZigbee2mqtt");
  const double reused = reporter.Rate("BM_MapZigbee2mqttReused");
  const double parse = reporter.Rate("BM_JsonParse");
  const double discovered = reporter.Rate("BM_MapDiscoveredZigbee2mqtt");
  std::printf(
      "\nzigbee2mqtt example through %zu rules: %.0f messages/s with a reused result "
      "(MapInto, as the bridge maps), %.0f/s with a new result per message (Map); "
      "bare json::parse: %.0f/s\nratio %.2f reused, %.2f new (aim >= 0.8)\n"
      "the same message through 3 discovered entities: %.0f/s, ratio %.2f\n",
      Engine().size(), reused, map, parse, parse > 0 ? reused / parse : 0.0,
      parse > 0 ? map / parse : 0.0, discovered, parse > 0 ? discovered / parse : 0.0);
  benchmark::Shutdown();
  return 0;
}
