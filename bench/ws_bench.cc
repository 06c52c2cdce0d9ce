// The WebSocket protocol (issue 22, docs/benchmarks.md, "WebSocket"): put
// round trips per second through /ws/v2 ({"put": ...} -> {"result": "ok"},
// the next put sent once the answer came) over one connection and over
// --clients (50) connections, one thread each, and beside them in the same
// run the same puts through POST /api/v1/komoku over keep-alive HTTP
// (cpp-httplib, with TCP_NODELAY), one client and --clients. The real komoku binary and a
// Mosquitto on loopback; each client puts its own key, a new value each
// time. The WebSocket client is Boost.Beast's.
//
// Rounds (--rounds, 3) run the four phases in turn so that a busy moment of
// the machine falls on all of them; the medians of the rounds are compared:
// the ratio of WebSocket to HTTP. Options: --seconds=N per phase (5),
// --clients=N (50), --rounds=N (3). Never fails for being slow; exits 1 only
// when something does not work.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "real_service.h"

namespace komoku::bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

struct Options {
  int seconds = 5;
  int clients = 50;
  int rounds = 3;
};

struct Figures {
  double rate = 0;  // round trips/s
  double p50_ms = 0, p99_ms = 0;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string PutRequest(int client, int64_t n) {
  return nlohmann::json{{"put", {{"key", "bench/" + std::to_string(client)}, {"value", n}}}}.dump();
}

// `threads` clients each running `one(client, n)` (a round trip; false: it
// failed) until `seconds` pass.
template <typename Setup>
Figures Load(int threads, int seconds, Setup setup) {
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
  std::atomic<int64_t> failed{0};
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  Clock::time_point start;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto one = setup(t);  // connects
      ++ready;
      while (!go.load()) std::this_thread::yield();
      const auto end = start + std::chrono::seconds(seconds);
      for (int64_t n = 0; Clock::now() < end; ++n) {
        const auto t0 = Clock::now();
        if (!one(t, n)) {
          ++failed;
          continue;
        }
        lat[static_cast<size_t>(t)].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    });
  }
  while (ready.load() < threads) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  start = Clock::now();
  go = true;
  for (auto& t : pool) t.join();
  const double elapsed = SecondsSince(start);
  if (failed.load() > 0) Fail(std::to_string(failed.load()) + " round trips failed");
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  Figures f;
  f.rate = static_cast<double>(all.size()) / elapsed;
  f.p50_ms = Percentile(all, 0.50);
  f.p99_ms = Percentile(all, 0.99);
  return f;
}

// One WebSocket connection to /ws/v2, owned by one thread.
struct WsClient {
  net::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer in;

  explicit WsClient(int port) {
    tcp::resolver resolver(ioc);
    net::connect(ws.next_layer(), resolver.resolve("127.0.0.1", std::to_string(port)));
    ws.next_layer().set_option(tcp::no_delay(true));
    ws.handshake("127.0.0.1:" + std::to_string(port), "/ws/v2");
    ws.text(true);
  }
  bool Put(int client, int64_t n) {
    beast::error_code ec;
    ws.write(net::buffer(PutRequest(client, n)), ec);
    if (ec) return false;
    ws.read(in, ec);
    if (ec) return false;
    const bool ok = beast::buffers_to_string(in.data()) == R"({"result":"ok"})";
    in.consume(in.size());
    return ok;
  }
};

Figures WsLoad(int port, int clients, int seconds) {
  std::vector<std::unique_ptr<WsClient>> conns(static_cast<size_t>(clients));
  return Load(clients, seconds, [&](int t) {
    conns[static_cast<size_t>(t)] = std::make_unique<WsClient>(port);
    WsClient* c = conns[static_cast<size_t>(t)].get();
    return [c](int client, int64_t n) { return c->Put(client, n); };
  });
}

Figures HttpLoad(int port, int clients, int seconds) {
  std::vector<std::unique_ptr<httplib::Client>> conns(static_cast<size_t>(clients));
  return Load(clients, seconds, [&](int t) {
    conns[static_cast<size_t>(t)] = NewClient(port);
    httplib::Client* c = conns[static_cast<size_t>(t)].get();
    // cpp-httplib writes a POST's header and body apart: with Nagle's
    // algorithm the body waits for the server's delayed ACK, 40 ms a
    // request, which would time the client, not the server.
    c->set_tcp_nodelay(true);
    return [c](int client, int64_t n) {
      auto res = c->Post("/api/v1/komoku", PutRequest(client, n), "application/json");
      return res && res->status == 200;
    };
  });
}

int Run(const Options& o) {
  std::printf("ws_bench: %s; %d s per phase, %d rounds, %d clients\n", MachineLine().c_str(),
              o.seconds, o.rounds, o.clients);
  ScratchDir dir(BenchBase(), "ws_bench");
  int broker_port = 0;
  auto broker = StartBroker(dir, &broker_port);
  Komoku komoku =
      StartKomoku(dir, "mqtt:\n  broker: tcp://127.0.0.1:" + std::to_string(broker_port) +
                           "\n  client_id: komoku-bench\nstore:\n  data_dir: " + dir.File("data") +
                           "\nhttp:\n  listen: 127.0.0.1:0\nlog:\n  level: warn\n");
  const int port = komoku.port;
  std::vector<double> ws1, wsn, http1, httpn;
  for (int round = 0; round < o.rounds; ++round) {
    Figures f = WsLoad(port, 1, o.seconds);
    std::printf("round %d  ws   1 connection:  %8.0f puts/s  p50 %6.2f ms  p99 %6.2f ms\n",
                round + 1, f.rate, f.p50_ms, f.p99_ms);
    ws1.push_back(f.rate);
    f = HttpLoad(port, 1, o.seconds);
    std::printf("round %d  http 1 client:      %8.0f puts/s  p50 %6.2f ms  p99 %6.2f ms\n",
                round + 1, f.rate, f.p50_ms, f.p99_ms);
    http1.push_back(f.rate);
    f = WsLoad(port, o.clients, o.seconds);
    std::printf("round %d  ws   %d connections: %7.0f puts/s  p50 %6.2f ms  p99 %6.2f ms\n",
                round + 1, o.clients, f.rate, f.p50_ms, f.p99_ms);
    wsn.push_back(f.rate);
    f = HttpLoad(port, o.clients, o.seconds);
    std::printf("round %d  http %d clients:     %7.0f puts/s  p50 %6.2f ms  p99 %6.2f ms\n",
                round + 1, o.clients, f.rate, f.p50_ms, f.p99_ms);
    httpn.push_back(f.rate);
  }
  std::printf(
      "median: ws 1 connection %.0f puts/s, http 1 client %.0f (ws/http %.2fx); ws %d "
      "connections %.0f puts/s, http %d clients %.0f (ws/http %.2fx)\n",
      Median(ws1), Median(http1), Median(ws1) / std::max(1.0, Median(http1)), o.clients,
      Median(wsn), o.clients, Median(httpn), Median(wsn) / std::max(1.0, Median(httpn)));
  komoku.process->Stop();
  broker->Stop();
  std::printf("%s\n", LoadLine().c_str());
  return 0;
}

}  // namespace
}  // namespace komoku::bench

int main(int argc, char** argv) {
  using namespace komoku::bench;
  return BenchMain("ws_bench", [&] {
    Options o;
    ParseIntFlags(argc, argv,
                  {{"--seconds", &o.seconds}, {"--clients", &o.clients}, {"--rounds", &o.rounds}});
    return Run(o);
  });
}
