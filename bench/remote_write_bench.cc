// Issue 23's remote write throughput: how many changes per second komoku
// sends to a real Prometheus receiver (Debian's `prometheus`,
// --web.enable-remote-write-receiver on loopback), beside a baseline
// measured in the same run: the same samples, in requests of the same size,
// encoded beforehand and POSTed from memory one request at a time by a bare
// client to a second, fresh Prometheus. The baseline is the receiver's own
// ingest rate over this path (what any sender of one request at a time gets
// at best); komoku's rate against it shows what reading the changes from
// SQLite, encoding them and keeping the state file cost.
//
// The data: kKeys numeric keys with kChangesPerKey changes each over the
// last 40 minutes (inside Prometheus's head window), written straight into
// the hot store's schema (HotDbBuilder), with a state file that makes komoku
// send everything from the first change on.
//
//   build/bench/remote_write_bench        (KOMOKU_BENCH_DIR for scratch space)
#include <httplib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "real_service.h"
#include "remote_write/encode.h"

namespace komoku::bench {
namespace {

constexpr int kKeys = 1000;
constexpr int kChangesPerKey = 300;
constexpr size_t kBatch = 2000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string KeyName(int k) {
  return "site/room" + std::to_string(k / 10) + "/t" + std::to_string(k % 10);
}
double ValueOf(int k, int j) { return k + j * 0.01; }

std::unique_ptr<Process> StartPrometheus(const ScratchDir& dir, const std::string& name,
                                         int* port) {
  const std::string conf = dir.File(name + ".yml");
  std::ofstream(conf) << "global:\n  scrape_interval: 1m\n";
  for (int attempt = 0; attempt < 5; ++attempt) {
    *port = FreeLoopbackPort();
    auto p = std::make_unique<Process>(
        std::vector<std::string>{PROMETHEUS_BINARY, "--config.file=" + conf,
                                 "--storage.tsdb.path=" + dir.File(name + "-tsdb"),
                                 "--web.enable-remote-write-receiver",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(*port)},
        dir.File(name + ".log"));
    httplib::Client cli("127.0.0.1", *port);
    if (WaitFor(
            [&] {
              auto r = cli.Get("/-/ready");
              return (r && r->status == 200) || !p->Running();
            },
            std::chrono::milliseconds(60000)) &&
        p->Running()) {
      return p;
    }
  }
  Fail("Prometheus did not start");
}

int Run() {
  std::printf("remote_write_bench: %s\n", MachineLine().c_str());
  ScratchDir dir(BenchBase(), "remote-write-bench");
  std::filesystem::create_directories(dir.File("data"));
  const int64_t start_ms = NowMs() - 40 * 60 * 1000;
  const int64_t step_ms = 40 * 60 * 1000 / kChangesPerKey;
  const int64_t total = static_cast<int64_t>(kKeys) * kChangesPerKey;
  {
    HotDbBuilder db(dir.File("data/komoku.db"));
    for (int k = 0; k < kKeys; ++k) db.AddKey(k + 1, KeyName(k), "numeric", start_ms);
    // In time order across keys, as live ingest stores them.
    for (int j = 0; j < kChangesPerKey; ++j) {
      for (int k = 0; k < kKeys; ++k)
        db.AddChange(k + 1, start_ms + j * step_ms + k, ValueOf(k, j));
    }
    db.Finish();
  }
  std::ofstream(dir.File("data/remote_write.json")) << "{\"acked_seq\": 0}\n";

  // Baseline: the same samples, the same request size, from memory.
  std::vector<std::string> bodies;
  {
    std::vector<store::Store::SeqChange> rows;
    uint64_t seq = 0;
    for (int j = 0; j < kChangesPerKey; ++j) {
      for (int k = 0; k < kKeys; ++k) {
        rows.push_back({++seq, KeyName(k), store::KeyType::kNumeric,
                        store::Sample{start_ms + j * step_ms + k, ValueOf(k, j)}});
        if (rows.size() == kBatch) {
          bodies.push_back(
              remote_write::EncodeWriteRequest(remote_write::BuildBatch(rows, {}, {}).series));
          rows.clear();
        }
      }
    }
    if (!rows.empty()) {
      bodies.push_back(
          remote_write::EncodeWriteRequest(remote_write::BuildBatch(rows, {}, {}).series));
    }
  }
  int base_port = 0;
  auto base_prom = StartPrometheus(dir, "baseline", &base_port);
  double base_seconds = 0;
  {
    httplib::Client cli("127.0.0.1", base_port);
    cli.set_keep_alive(true);
    cli.set_read_timeout(std::chrono::seconds(60));
    const httplib::Headers headers = {{"Content-Encoding", "snappy"},
                                      {"X-Prometheus-Remote-Write-Version", "0.1.0"}};
    const auto t0 = Clock::now();
    for (const std::string& body : bodies) {
      auto r = cli.Post("/api/v1/write", headers, body, "application/x-protobuf");
      if (!r || r->status / 100 != 2) Fail("baseline: the receiver refused a request");
    }
    base_seconds = SecondsSince(t0);
  }
  base_prom->Stop();

  int prom_port = 0;
  auto prom = StartPrometheus(dir, "receiver", &prom_port);
  int broker_port = 0;
  auto broker = StartBroker(dir, &broker_port);
  const auto t0 = Clock::now();
  Komoku komoku = StartKomoku(
      dir, "mqtt:\n  broker: tcp://127.0.0.1:" + std::to_string(broker_port) +
               "\nstore:\n  data_dir: " + dir.File("data") +
               "\nhttp:\n  listen: 127.0.0.1:0\nremote_write:\n  url: http://127.0.0.1:" +
               std::to_string(prom_port) +
               "/api/v1/write\n  batch_size: " + std::to_string(kBatch) + "\n");
  Progress p = WaitProgress([&] { return Metric(komoku.port, "komoku_remote_write_sent_total"); },
                            total, t0, std::chrono::milliseconds(60000),
                            std::chrono::milliseconds(900000), std::chrono::milliseconds(20));
  if (!p.reached)
    komoku.FailWithLog("komoku sent " + std::to_string(p.count) + " of " + std::to_string(total));
  const int64_t failed = Metric(komoku.port, "komoku_remote_write_failed_total");
  komoku.process->Stop();
  prom->Stop();

  std::printf("  %lld changes of %d keys, requests of %zu\n", static_cast<long long>(total), kKeys,
              kBatch);
  std::printf("  baseline, bare client from memory:  %8.2f s  %9.0f changes/s\n", base_seconds,
              total / base_seconds);
  std::printf(
      "  komoku remote write (from start):   %8.2f s  %9.0f changes/s  (%.0f%% of baseline; "
      "failed %lld)\n",
      p.seconds, total / p.seconds, 100.0 * base_seconds / p.seconds,
      static_cast<long long>(failed));
  std::printf("  %s\n", LoadLine().c_str());
  return 0;
}

}  // namespace
}  // namespace komoku::bench

int main() {
  try {
    return komoku::bench::Run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "remote_write_bench: %s\n", e.what());
    return 1;
  }
}
