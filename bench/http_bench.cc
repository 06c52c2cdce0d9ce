// The HTTP front door (issue 26, docs/benchmarks.md, "HTTP front door"):
// the real komoku binary on loopback, and beside it in the same run a
// baseline komoku (KOMOKU_BASELINE_BINARY, e.g. a build of the last commit
// on cpp-httplib) with the same data. For each, with one key holding a
// value, each phase for --seconds:
//
// - 1 client       GET /api/v1/value, one keep-alive client: requests/s, p50, p99
// - N clients      the same from --clients (50) keep-alive clients, one thread each
// - under siege    one keep-alive client while --idle (2000) connections sit
//                  open sending nothing and --slow (100) clients send a
//                  request one byte every 2 s (each reconnecting when the
//                  server closes it): p50 and p99 of the good client, its
//                  failed requests (none may fail, 10 s read timeout), and
//                  /healthz answered of 5 asked (5 s timeout each) and the
//                  slowest; komoku's RssAnon at the end
//
// Both servers run side by side; the rounds (--rounds, 3) alternate between
// them so that the machine's busy moments fall on both, and the medians of
// the rounds are compared: the ratio of this build to the baseline. The clients
// are cpp-httplib's (keep-alive; a server that closes a connection costs a
// reconnect). The bench raises its RLIMIT_NOFILE to the hard limit, which
// the komoku it starts inherits. Without KOMOKU_BASELINE_BINARY only this
// build is measured (and it says so).
//
// Options: --seconds=N per phase (5), --clients=N (50), --idle=N (2000),
// --slow=N (100), --rounds=N (3). Never fails for being slow; exits 1 only when something
// does not work.
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "real_service.h"

namespace komoku::bench {
namespace {

struct Options {
  int seconds = 5;
  int clients = 50;
  int idle = 2000;
  int slow = 100;
  int rounds = 3;
};

struct Figures {
  double rate = 0;  // requests/s
  double p50_ms = 0, p99_ms = 0;
  int64_t failed = 0;
};

struct Result {
  std::string name;
  Figures one, many, siege;
  int healthz_answered = 0;
  double healthz_max_ms = 0;  // the slowest of the 5, answered or not
  int64_t rss_anon_kb = 0;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// `threads` keep-alive clients asking `path` until `seconds` pass.
Figures Load(int port, const std::string& path, int threads, int seconds) {
  std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
  std::atomic<int64_t> failed{0};
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(seconds);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto cli = NewClient(port);
      cli->set_read_timeout(std::chrono::seconds(10));
      while (Clock::now() < end) {
        const auto t0 = Clock::now();
        auto res = cli->Get(path.c_str());
        if (!res || res->status != 200) {
          if (failed++ == 0) {
            std::printf("    first failed request: %s\n",
                        res ? ("status " + std::to_string(res->status)).c_str()
                            : httplib::to_string(res.error()).c_str());
          }
          continue;
        }
        lat[static_cast<size_t>(t)].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      }
    });
  }
  for (auto& t : pool) t.join();
  const double elapsed = SecondsSince(start);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  Figures f;
  f.rate = static_cast<double>(all.size()) / elapsed;
  f.failed = failed.load();
  f.p50_ms = Percentile(all, 0.50);
  f.p99_ms = Percentile(all, 0.99);
  return f;
}

// A socket connecting to 127.0.0.1:port without waiting (a full backlog
// must not stall the bench).
int ConnectNoWait(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) Fail("socket: out of file descriptors? (raise ulimit -n)");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);  // EINPROGRESS
  return fd;
}

// Idle connections and slow clients while it lives.
class Siege {
 public:
  Siege(int port, int idle, int slow) : port_(port) {
    for (int i = 0; i < idle; ++i) idle_.push_back(ConnectNoWait(port));
    for (int i = 0; i < slow; ++i) slow_.push_back({ConnectNoWait(port), 0});
    thread_ = std::thread([this] { Drip(); });
  }
  ~Siege() {
    stop_ = true;
    thread_.join();
    for (int fd : idle_) close(fd);
    for (auto& s : slow_) close(s.fd);
  }
  int64_t reconnects() const { return reconnects_.load(); }

 private:
  void Drip() {
    const std::string request = "GET /api/v1/value?key=bench HTTP/1.1\r\nHost: x\r\n\r\n";
    while (!stop_) {
      for (auto& s : slow_) {
        char byte = request[s.at % request.size()];
        if (send(s.fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1) {
          ++s.at;
          continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN) continue;
        close(s.fd);  // the server closed it (a timeout): come back
        s.fd = ConnectNoWait(port_);
        s.at = 0;
        ++reconnects_;
      }
      for (int i = 0; i < 20 && !stop_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  struct Slow {
    int fd;
    size_t at;
  };
  const int port_;
  std::vector<int> idle_;
  std::vector<Slow> slow_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> reconnects_{0};
  std::thread thread_;
};

// A broker and a komoku (this build's, or `binary`) with one key holding a
// value.
struct Server {
  std::string name;
  std::unique_ptr<ScratchDir> dir;
  std::unique_ptr<Process> broker;
  Komoku komoku;
};

std::unique_ptr<Server> StartServer(const std::string& name, const std::string& binary,
                                    const std::string& http_yaml) {
  auto s = std::make_unique<Server>();
  s->name = name;
  s->dir = std::make_unique<ScratchDir>(BenchBase(), "http_bench-" + name);
  int broker_port = 0;
  s->broker = StartBroker(*s->dir, &broker_port);
  s->komoku = StartKomoku(*s->dir,
                          "mqtt:\n  broker: tcp://127.0.0.1:" + std::to_string(broker_port) +
                              "\n  client_id: komoku-bench\n"
                              "store:\n  data_dir: " +
                              s->dir->File("data") +
                              "\n"
                              "http:\n  listen: 127.0.0.1:0\n" +
                              http_yaml + "log:\n  level: warn\n",
                          std::chrono::milliseconds(20), binary);
  auto cli = NewClient(s->komoku.port);
  auto res = cli->Put("/api/v1/value?key=bench", "21.5", "text/plain");
  if (!res || res->status / 100 != 2) {
    s->komoku.FailWithLog("PUT /api/v1/value did not answer 2xx");
  }
  return s;
}

// One round of the three phases against `s`.
Result Measure(Server& s, const Options& o) {
  Result r;
  r.name = s.name;
  const int port = s.komoku.port;
  const char* name = s.name.c_str();
  const std::string path = "/api/v1/value?key=bench";
  r.one = Load(port, path, 1, o.seconds);
  std::printf("  %-8s 1 client:   %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  failed %lld\n", name,
              r.one.rate, r.one.p50_ms, r.one.p99_ms, static_cast<long long>(r.one.failed));
  r.many = Load(port, path, o.clients, o.seconds);
  std::printf("  %-8s %d clients: %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  failed %lld\n", name,
              o.clients, r.many.rate, r.many.p50_ms, r.many.p99_ms,
              static_cast<long long>(r.many.failed));
  {
    Siege siege(port, o.idle, o.slow);
    std::this_thread::sleep_for(std::chrono::seconds(2));  // let them connect
    r.siege = Load(port, path, 1, o.seconds);
    for (int i = 0; i < 5; ++i) {
      httplib::Client probe("127.0.0.1", port);
      probe.set_connection_timeout(std::chrono::seconds(5));
      probe.set_read_timeout(std::chrono::seconds(5));
      const auto t0 = Clock::now();
      auto res = probe.Get("/healthz");
      r.healthz_answered += res && res->status == 200;
      r.healthz_max_ms = std::max(
          r.healthz_max_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    r.rss_anon_kb = ProcStatus(s.komoku.process->pid())["RssAnon"] / 1024;
    std::printf(
        "  %-8s siege (%d idle, %d slow): %6.0f req/s  p50 %6.2f ms  p99 %6.2f ms  "
        "failed %lld  /healthz %d of 5 (slowest %.1f ms)  RssAnon %lld kB  slow reconnects "
        "%lld\n",
        name, o.idle, o.slow, r.siege.rate, r.siege.p50_ms, r.siege.p99_ms,
        static_cast<long long>(r.siege.failed), r.healthz_answered, r.healthz_max_ms,
        static_cast<long long>(r.rss_anon_kb), static_cast<long long>(siege.reconnects()));
  }
  // The siege's connections go before the next phase.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  return r;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string Ratio(double a, double b) {
  char out[32];
  if (b > 0) {
    std::snprintf(out, sizeof out, "%.2fx", a / b);
  } else {
    std::snprintf(out, sizeof out, "n/a (baseline: none)");
  }
  return out;
}

int Run(const Options& o) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  std::printf("http_bench: %s; RLIMIT_NOFILE %llu; %d s per phase, %d rounds\n",
              MachineLine().c_str(), static_cast<unsigned long long>(rl.rlim_cur), o.seconds,
              o.rounds);
  const char* baseline = std::getenv("KOMOKU_BASELINE_BINARY");
  // Room for the siege: its idle and slow connections are under the cap.
  const std::string http_yaml =
      "  max_connections: " + std::to_string(o.idle + o.slow + 200) + "\n";
  std::vector<std::unique_ptr<Server>> servers;
  servers.push_back(StartServer("this", "", http_yaml));
  if (baseline && *baseline) {
    servers.push_back(StartServer("baseline", baseline, ""));
  } else {
    std::printf("no baseline: set KOMOKU_BASELINE_BINARY to a komoku built before the change\n");
  }
  // Rounds alternate the servers, so that a busy moment of the machine
  // falls on both; the medians of the rounds are compared.
  std::vector<std::vector<Result>> results(servers.size());
  for (int round = 0; round < o.rounds; ++round) {
    std::printf("round %d\n", round + 1);
    for (size_t i = 0; i < servers.size(); ++i) results[i].push_back(Measure(*servers[i], o));
  }
  struct Medians {
    double one_rate, many_rate, siege_rate, siege_p50, siege_p99, one_p99;
  };
  std::vector<Medians> m;
  for (size_t i = 0; i < servers.size(); ++i) {
    std::vector<double> a, b, c, d, e, f;
    for (const Result& r : results[i]) {
      a.push_back(r.one.rate);
      b.push_back(r.many.rate);
      c.push_back(r.siege.rate);
      d.push_back(r.siege.p50_ms);
      e.push_back(r.siege.p99_ms);
      f.push_back(r.one.p99_ms);
    }
    m.push_back({Median(a), Median(b), Median(c), Median(d), Median(e), Median(f)});
    std::printf(
        "median %-8s 1 client %.0f req/s (p99 %.2f ms), %d clients %.0f req/s, siege %.0f req/s "
        "p50 %.2f ms p99 %.2f ms\n",
        servers[i]->name.c_str(), m[i].one_rate, m[i].one_p99, o.clients, m[i].many_rate,
        m[i].siege_rate, m[i].siege_p50, m[i].siege_p99);
  }
  if (m.size() == 2) {
    std::printf(
        "this / baseline (medians): 1 client rate %s, %d clients rate %s, siege rate %s, "
        "siege p50 %s, siege p99 %s\n",
        Ratio(m[0].one_rate, m[1].one_rate).c_str(), o.clients,
        Ratio(m[0].many_rate, m[1].many_rate).c_str(),
        Ratio(m[0].siege_rate, m[1].siege_rate).c_str(),
        Ratio(m[0].siege_p50, m[1].siege_p50).c_str(),
        Ratio(m[0].siege_p99, m[1].siege_p99).c_str());
  }
  for (auto& s : servers) {
    s->komoku.process->Stop();
    s->broker->Stop();
  }
  std::printf("%s\n", LoadLine().c_str());
  return 0;
}

}  // namespace
}  // namespace komoku::bench

int main(int argc, char** argv) {
  using namespace komoku::bench;
  return BenchMain("http_bench", [&] {
    Options o;
    ParseIntFlags(argc, argv,
                  {{"--seconds", &o.seconds},
                   {"--clients", &o.clients},
                   {"--idle", &o.idle},
                   {"--slow", &o.slow},
                   {"--rounds", &o.rounds}});
    return Run(o);
  });
}
