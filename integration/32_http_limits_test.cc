// 32: the HTTP front door under hostile clients (issue 26), against the real
// binary behind a token: every limit answers with its documented status and
// a JSON body — a chunked body past http.max_body_bytes (413), a header past
// max_header_bytes or max_header_fields (431, before the token is looked
// at), a compressed body (415), a POST without a length (411), malformed
// requests (400), a header that never ends (408) — Range is ignored,
// `bearer` in any case is accepted, idle and slow connections by the
// hundred leave /healthz and a good client's request answered, the
// connection cap answers 503 while the probes still answer, and a stream
// client that does not read is dropped and counted. Komoku's RssAnon stays
// under 64 MB through each flood. No timing is asserted: every wait is
// generous.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "harness/harness.h"

namespace komoku::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kToken[] = "limits-token-0123456789";
constexpr long kRssLimitKb = 64 * 1024;

// The RssAnon of `pid` in kB (/proc/<pid>/status), -1 when unreadable.
long RssAnonKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stol(line.substr(8));
  }
  return -1;
}

// Lets this process (and the komoku it starts) hold a few thousand sockets.
void RaiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

struct Answer {
  int status = 0;  // 0: no answer
  std::string head;
  std::string body;
  bool JsonError(const std::string& code) const {
    json j = json::parse(body, nullptr, false);
    return !j.is_discarded() && j.is_object() && j.contains("error") &&
           j["error"].value("code", "") == code && j["error"].contains("message");
  }
};

// A raw TCP connection to 127.0.0.1:port: sends bytes as given and reads one
// answer (headers and Content-Length bytes of body).
class Conn {
 public:
  explicit Conn(int port, int rcvbuf = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~Conn() {
    if (fd_ >= 0) close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // False once the peer refused more (reset, closed).
  bool Send(const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // One answer, waiting up to `timeout` in all; `head`: the answer to a
  // HEAD request, whose Content-Length has no body after it.
  Answer Read(milliseconds timeout = seconds(60), bool head = false) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    Answer a;
    for (;;) {
      const size_t end = data_.find("\r\n\r\n");
      if (end != std::string::npos) {
        a.head = data_.substr(0, end);
        size_t length = 0;
        for (const char* name : {"Content-Length: ", "content-length: "}) {
          const size_t at = a.head.find(name);
          if (at != std::string::npos && !head) length = std::stoul(a.head.substr(at + 16));
        }
        if (data_.size() >= end + 4 + length) {
          a.body = data_.substr(end + 4, length);
          data_.erase(0, end + 4 + length);
          if (a.head.rfind("HTTP/1.", 0) == 0) a.status = std::stoi(a.head.substr(9, 3));
          return a;
        }
      }
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return a;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[16384];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return a;
      data_.append(buf, static_cast<size_t>(n));
    }
  }

  Answer Ask(const std::string& request, milliseconds timeout = seconds(60)) {
    Send(request);
    return Read(timeout);
  }

 private:
  int fd_ = -1;
  std::string data_;
};

std::string Get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + kToken +
         "\r\n" + extra + "\r\n";
}

class HttpLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RaiseFileLimit();
    broker_ = std::make_unique<Broker>(dir_);
    std::ofstream(dir_.File("token")) << kToken << "\n";
    komoku_ = std::make_unique<Komoku>(dir_, *broker_, "", "",
                                       "  token_file: " + dir_.File("token") + "\n" + HttpYaml());
    ASSERT_TRUE(komoku_->Start()) << komoku_->Output();
    komoku_->set_token(kToken);
  }
  void TearDown() override { DumpOnFailure(*broker_, *komoku_); }
  virtual std::string HttpYaml() const {
    return "  header_timeout: 3\n  stream_queue_bytes: 4096\n";
  }

  int port() const { return komoku_->http_port(); }
  long Rss() { return RssAnonKb(komoku_->process()->pid()); }
  // Sends `head` then, on another thread, `chunk` again and again up to
  // `total` bytes or until the server stops taking them; returns the answer.
  Answer Flood(const std::string& head, const std::string& chunk, size_t total) {
    Conn c(port());
    EXPECT_TRUE(c.ok());
    c.Send(head);
    std::thread sender([&c, &chunk, total] {
      for (size_t sent = 0; sent < total; sent += chunk.size()) {
        if (!c.Send(chunk)) return;
      }
    });
    Answer a = c.Read();
    shutdown(c.fd(), SHUT_RDWR);  // ends the sender's send
    sender.join();
    return a;
  }

  TempDir dir_;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Komoku> komoku_;
};

TEST_F(HttpLimitsTest, ChunkedBodiesPastTheLimitAre413) {
  const std::string head =
      "PUT /api/v1/value?key=flood HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
      std::string(kToken) + "\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string chunk = "10000\r\n" + std::string(0x10000, '1') + "\r\n";
  // Two at once, 128 MB each.
  Answer a1, a2;
  std::thread other([&] { a2 = Flood(head, chunk, 128u << 20); });
  a1 = Flood(head, chunk, 128u << 20);
  other.join();
  for (const Answer* a : {&a1, &a2}) {
    EXPECT_EQ(a->status, 413) << a->head;
    EXPECT_TRUE(a->JsonError("too_large")) << a->body;
  }
  // One chunk that says it is larger than the limit.
  Conn c(port());
  Answer big = c.Ask(head + "FFFFFFFF\r\n");
  EXPECT_EQ(big.status, 413) << big.head;
  EXPECT_TRUE(big.JsonError("too_large")) << big.body;
  // A Content-Length past the limit is refused before a body byte.
  Conn d(port());
  Answer cl = d.Ask(
      "PUT /api/v1/value?key=flood HTTP/1.1\r\nHost: x\r\nContent-Length: "
      "1000000000\r\n\r\n");
  EXPECT_EQ(cl.status, 413) << cl.head;
  EXPECT_TRUE(cl.JsonError("too_large")) << cl.body;
  EXPECT_LT(Rss(), kRssLimitKb);
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"too_large\"}"), 4);
  // Nothing was stored, and the service answers.
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=flood").status, 404);
}

TEST_F(HttpLimitsTest, HeadersPastTheLimitsAre431BeforeTheToken) {
  // 300,000 header fields (about 18 MB), four at once, without a token.
  const std::string head = "GET /api/v1/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  std::string fields;
  for (int i = 0; i < 1000; ++i) fields += "X-Flood-" + std::to_string(i) + ": 0123456789abc\r\n";
  std::vector<Answer> answers(4);
  std::vector<std::thread> threads;
  for (auto& a : answers) {
    threads.emplace_back([&, &a = a] { a = Flood(head, fields, 18u << 20); });
  }
  for (auto& t : threads) t.join();
  for (const Answer& a : answers) {
    EXPECT_EQ(a.status, 431) << a.head;
    EXPECT_TRUE(a.JsonError("header_too_large")) << a.body;
  }
  EXPECT_LT(Rss(), kRssLimitKb);
  // Few bytes but too many fields.
  std::string many;
  for (int i = 0; i < 150; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  Conn c(port());
  Answer a = c.Ask(head + many + "\r\n");
  EXPECT_EQ(a.status, 431) << a.head;
  EXPECT_NE(a.body.find("header fields"), std::string::npos) << a.body;
  EXPECT_EQ(komoku_->Metric("komoku_refused_total{reason=\"unauthorized\"}"), 0);
}

TEST_F(HttpLimitsTest, BodiesNeedALengthAndNoCompression) {
  // No Content-Length, no Transfer-Encoding: answered at once, not after a
  // timeout.
  Conn c(port());
  Answer a = c.Ask("POST /api/v1/compact HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                       std::string(kToken) + "\r\n\r\n",
                   seconds(60));
  EXPECT_EQ(a.status, 411) << a.head;
  EXPECT_TRUE(a.JsonError("length_required")) << a.body;
  EXPECT_NE(a.body.find("-d ''"), std::string::npos) << a.body;

  // A gzip body (a bomb or not) is refused unread.
  std::string gz(61 * 1024, '\0');
  gz[0] = '\x1f';
  gz[1] = '\x8b';
  Conn d(port());
  Answer z = d.Ask("PUT /api/v1/value?key=z HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                   std::string(kToken) + "\r\nContent-Encoding: gzip\r\nContent-Length: " +
                   std::to_string(gz.size()) + "\r\n\r\n" + gz);
  EXPECT_EQ(z.status, 415) << z.head;
  EXPECT_TRUE(z.JsonError("unsupported_encoding")) << z.body;
  EXPECT_EQ(komoku_->Get("/api/v1/value?key=z").status, 404);
  EXPECT_LT(Rss(), kRssLimitKb);
}

TEST_F(HttpLimitsTest, RangeIsIgnoredAndErrorsStayJson) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(komoku_->Put("/api/v1/value?key=r/" + std::to_string(i), "1").status, 201);
  }
  std::string ranges = "Range: bytes=0-";
  for (int i = 0; i < 1000; ++i) ranges += ",0-";
  Conn c(port());
  Answer keys = c.Ask(Get("/api/v1/keys", ranges + "\r\n"));
  EXPECT_EQ(keys.status, 200) << keys.head;
  json j = json::parse(keys.body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << keys.body.substr(0, 200);
  EXPECT_EQ(j["keys"].size(), 50u);
  // The same connection, kept alive: a 404 with Range: bytes=-1 is whole JSON.
  Answer missing = c.Ask(Get("/api/v1/value?key=nope", "Range: bytes=-1\r\n"));
  EXPECT_EQ(missing.status, 404) << missing.head;
  EXPECT_TRUE(missing.JsonError("unknown_key")) << missing.body;
  Answer bad = c.Ask(Get("/api/v1/history?key=r/1&from=never", "Range: bytes=-1\r\n"));
  EXPECT_EQ(bad.status, 400) << bad.head;
  EXPECT_TRUE(bad.JsonError("bad_time") || bad.JsonError("bad_request")) << bad.body;
}

TEST_F(HttpLimitsTest, HeadAnswersTheHeaderAlone) {
  Conn c(port());
  c.Send("HEAD /api/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kToken) +
         "\r\n\r\n");
  Answer keys = c.Read(seconds(60), /*head=*/true);
  EXPECT_EQ(keys.status, 200) << keys.head;
  // The same connection goes on: the next answer is not mixed with a body.
  Answer again = c.Ask(Get("/api/v1/keys"));
  EXPECT_EQ(again.status, 200) << again.head;
  EXPECT_TRUE(json::parse(again.body, nullptr, false).is_object()) << again.body;
  // HEAD of a stream opens none.
  Conn d(port());
  d.Send("HEAD /api/v1/stream?key=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
         std::string(kToken) + "\r\n\r\n");
  Answer stream = d.Read(seconds(60), /*head=*/true);
  EXPECT_EQ(stream.status, 200) << stream.head;
  EXPECT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_sse_clients") == 0; }, seconds(60)));
}

TEST_F(HttpLimitsTest, TheBearerSchemeIsCaseInsensitive) {
  for (const char* scheme : {"bearer", "BEARER", "Bearer", "bEaReR"}) {
    Conn c(port());
    Answer a =
        c.Ask("GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nauthorization: " + std::string(scheme) +
              " " + kToken + "\r\n\r\n");
    EXPECT_EQ(a.status, 200) << scheme << ": " << a.body;
  }
  Conn c(port());
  Answer basic = c.Ask("GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " +
                       std::string(kToken) + "\r\n\r\n");
  EXPECT_EQ(basic.status, 401);
  EXPECT_TRUE(basic.JsonError("unauthorized")) << basic.body;
}

TEST_F(HttpLimitsTest, MalformedRequestsGetJsonErrors) {
  const std::vector<std::string> requests = {
      "GARBAGE\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      "GET /api/v1/keys HTTP/1.1\r\nNo colon here\r\n\r\n",
      "\x01\x02\x03\x04\r\n\r\n",
      "GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      "PUT /api/v1/value?key=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n",
      "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      "GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "GET /api/v1/keys\r\n\r\n",
  };
  for (int round = 0; round < 20; ++round) {
    for (const std::string& r : requests) {
      Conn c(port());
      Answer a = c.Ask(r);
      EXPECT_GE(a.status, 400) << r << " -> " << a.head;
      json j = json::parse(a.body, nullptr, false);
      EXPECT_TRUE(!j.is_discarded() && j.contains("error")) << r << " -> " << a.body;
    }
  }
  EXPECT_LT(Rss(), kRssLimitKb);
  EXPECT_EQ(komoku_->Get("/healthz").status, 200);
}

// 500 at once, each with a malformed request (issue 19: 529 MB then).
TEST_F(HttpLimitsTest, AFloodOfMalformedRequestsAtOnceStaysSmall) {
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < 500; ++i) {
    conns.push_back(std::make_unique<Conn>(port()));
    ASSERT_TRUE(conns.back()->ok()) << i;
  }
  const std::string bad = "GET /api/v1/keys HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n";
  for (auto& c : conns) c->Send(bad);
  int json_errors = 0;
  for (auto& c : conns) {
    Answer a = c->Read(seconds(60));
    json_errors += a.status == 400 && a.JsonError("bad_request");
  }
  EXPECT_EQ(json_errors, 500);
  EXPECT_LT(Rss(), kRssLimitKb);
  EXPECT_EQ(komoku_->Get("/healthz").status, 200);
}

// curl sends `Expect: 100-continue` before a body over 1 KB.
TEST_F(HttpLimitsTest, ExpectContinueIsAnsweredBeforeTheBody) {
  const std::string body = "{\"value\": \"" + std::string(2000, 'v') + "\"}";
  Conn c(port());
  Answer go = c.Ask("PUT /api/v1/value?key=cont HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                    std::string(kToken) + "\r\nExpect: 100-continue\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n");
  EXPECT_EQ(go.status, 100) << go.head;
  Answer done = c.Ask(body);
  EXPECT_EQ(done.status, 201) << done.head << done.body;
  // Without the token, the answer is 401 and the body is never asked for.
  Conn d(port());
  Answer no = d.Ask(
      "PUT /api/v1/value?key=cont HTTP/1.1\r\nHost: x\r\nExpect: "
      "100-continue\r\nContent-Length: 5000000\r\n\r\n");
  EXPECT_EQ(no.status, 413) << no.head;  // past the body limit: before the token
  Conn e(port());
  Answer unauth = e.Ask(
      "PUT /api/v1/value?key=cont HTTP/1.1\r\nHost: x\r\nExpect: "
      "100-continue\r\nContent-Length: 10\r\n\r\n");
  EXPECT_EQ(unauth.status, 401) << unauth.head;
  EXPECT_TRUE(unauth.JsonError("unauthorized")) << unauth.body;
}

TEST_F(HttpLimitsTest, IdleAndSlowClientsLeaveTheServiceAnswering) {
  std::vector<std::unique_ptr<Conn>> idle;
  for (int i = 0; i < 500; ++i) {
    idle.push_back(std::make_unique<Conn>(port()));
    ASSERT_TRUE(idle.back()->ok()) << i;
  }
  // 40 clients sending one byte of a valid request every 2 s.
  const std::string request = Get("/api/v1/keys");
  std::vector<std::unique_ptr<Conn>> slow;
  for (int i = 0; i < 40; ++i) slow.push_back(std::make_unique<Conn>(port()));
  std::atomic<bool> stop{false};
  std::thread dripper([&] {
    for (size_t at = 0; !stop && at < request.size(); ++at) {
      for (auto& c : slow) c->Send(request.substr(at, 1));
      for (int i = 0; i < 20 && !stop; ++i) std::this_thread::sleep_for(milliseconds(100));
    }
  });
  for (int i = 0; i < 5; ++i) {
    Conn probe(port());
    Answer h = probe.Ask("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", seconds(30));
    EXPECT_EQ(h.status, 200) << "probe " << i << ": " << h.head;
  }
  Conn good(port());
  for (int i = 0; i < 5; ++i) {
    Answer a = good.Ask(Get("/api/v1/keys"), seconds(30));
    EXPECT_EQ(a.status, 200) << "keep-alive request " << i << ": " << a.head;
  }
  EXPECT_LT(Rss(), kRssLimitKb);
  // The slow ones are cut off at http.header_timeout (3 s) with a JSON 408.
  for (auto& c : slow) {
    Answer a = c->Read(seconds(60));
    EXPECT_EQ(a.status, 408) << a.head;
    EXPECT_TRUE(a.JsonError("timeout")) << a.body;
  }
  stop = true;
  dripper.join();
  EXPECT_GE(komoku_->Metric("komoku_refused_total{reason=\"timeout\"}"), 40);
}

TEST_F(HttpLimitsTest, AStreamClientThatDoesNotReadIsDropped) {
  // A client with a small receive buffer that never reads.
  Conn reader(port(), 4096);
  ASSERT_TRUE(reader.Send(Get("/api/v1/stream?key=big")));
  ASSERT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_sse_clients") == 1; }, seconds(60)));
  const std::string value(8000, 'x');
  bool dropped = false;
  for (int i = 0; i < 5000 && !dropped; ++i) {
    ASSERT_EQ(komoku_->Put("/api/v1/value?key=big", value + std::to_string(i)).status / 100, 2);
    if (i % 50 == 0) dropped = komoku_->Metric("komoku_sse_dropped_total") >= 1;
  }
  EXPECT_TRUE(
      WaitFor([&] { return komoku_->Metric("komoku_sse_dropped_total") >= 1; }, seconds(60)));
  EXPECT_TRUE(WaitFor([&] { return komoku_->Metric("komoku_sse_clients") == 0; }, seconds(60)));
  EXPECT_LT(Rss(), kRssLimitKb);
}

class HttpConnectionCapTest : public HttpLimitsTest {
 protected:
  std::string HttpYaml() const override { return "  max_connections: 20\n"; }
};

TEST_F(HttpConnectionCapTest, PastTheCapOnlyTheProbesAnswer) {
  std::vector<std::unique_ptr<Conn>> idle;
  for (int i = 0; i < 20; ++i) idle.push_back(std::make_unique<Conn>(port()));
  // The server accepts them in its own time: wait for the cap to show.
  Answer refused;
  ASSERT_TRUE(WaitFor(
      [&] {
        Conn c(port());
        refused = c.Ask(Get("/api/v1/keys"), seconds(30));
        return refused.status == 503;
      },
      seconds(60)))
      << refused.head;
  EXPECT_TRUE(refused.JsonError("too_many_connections")) << refused.body;
  for (const char* probe : {"/healthz", "/readyz"}) {
    Conn c(port());
    Answer a = c.Ask(std::string("GET ") + probe + " HTTP/1.1\r\nHost: x\r\n\r\n", seconds(30));
    EXPECT_TRUE(a.status == 200 || a.status == 503) << probe << ": " << a.head;
    EXPECT_FALSE(a.JsonError("too_many_connections")) << probe << ": " << a.body;
  }
  // 200 more past the cap: each gets an answer, and memory stays small.
  std::vector<std::unique_ptr<Conn>> more;
  for (int i = 0; i < 200; ++i) {
    more.push_back(std::make_unique<Conn>(port()));
    more.back()->Send(Get("/api/v1/keys"));
  }
  for (auto& c : more) {
    Answer a = c->Read(seconds(60));
    EXPECT_EQ(a.status, 503) << a.head;
    EXPECT_TRUE(a.JsonError("too_many_connections")) << a.body;
  }
  EXPECT_LT(Rss(), kRssLimitKb);
  idle.clear();
  more.clear();
  EXPECT_TRUE(WaitFor([&] { return komoku_->Get("/api/v1/keys").status == 200; }, seconds(60)));
}

}  // namespace
}  // namespace komoku::testing
