#include "bridge/broker_socket.h"

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace komoku::bridge {
namespace {

struct DirClose {
  void operator()(DIR* d) const { closedir(d); }
};

// The peer `fd` is connected to, when it is a connected TCP socket.
bool TcpPeer(int fd, sockaddr_storage* peer) {
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) return false;
  len = sizeof *peer;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(peer), &len) != 0) return false;
  return peer->ss_family == AF_INET || peer->ss_family == AF_INET6;
}

bool SameAddress(const sockaddr_storage& a, const sockaddr* b) {
  if (a.ss_family != b->sa_family) return false;
  if (a.ss_family == AF_INET) {
    const auto* x = reinterpret_cast<const sockaddr_in*>(&a);
    const auto* y = reinterpret_cast<const sockaddr_in*>(b);
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const auto* x = reinterpret_cast<const sockaddr_in6*>(&a);
  const auto* y = reinterpret_cast<const sockaddr_in6*>(b);
  return x->sin6_port == y->sin6_port &&
         std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

}  // namespace

Result<BrokerAddress> ParseBrokerUrl(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return Status::InvalidArgument("not a URL: '" + url + "'");
  const std::string scheme = url.substr(0, scheme_end);
  BrokerAddress a;
  if (scheme == "tcp" || scheme == "mqtt") {
    a.port = "1883";
  } else if (scheme == "ssl" || scheme == "mqtts") {
    a.port = "8883";
  } else {
    return Status::InvalidArgument("unknown scheme in '" + url + "'");
  }
  std::string rest = url.substr(scheme_end + 3);
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) rest.resize(slash);
  if (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos) return Status::InvalidArgument("bad host in '" + url + "'");
    a.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return Status::InvalidArgument("bad host in '" + url + "'");
      a.port = rest.substr(close + 2);
    }
  } else {
    const size_t colon = rest.rfind(':');
    a.host = rest.substr(0, colon);
    if (colon != std::string::npos) a.port = rest.substr(colon + 1);
  }
  if (a.host.empty() || a.port.empty()) {
    return Status::InvalidArgument("bad host or port in '" + url + "'");
  }
  return a;
}

Result<int> SetNoDelayToBroker(const std::string& url) {
  Result<BrokerAddress> broker = ParseBrokerUrl(url);
  if (!broker.ok()) return broker.status();
  addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(broker->host.c_str(), broker->port.c_str(), &hints, &found);
  if (rc != 0) return Status::IOError("cannot resolve '" + broker->host + "': " + gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, &freeaddrinfo);

  std::unique_ptr<DIR, DirClose> dir(opendir("/proc/self/fd"));
  if (!dir)
    return Status::IOError(std::string("cannot list /proc/self/fd: ") + std::strerror(errno));
  // Read first, set after: the listing's own descriptor is among those read.
  std::vector<int> fds;
  while (const dirent* e = readdir(dir.get())) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && fd != dirfd(dir.get()))
      fds.push_back(static_cast<int>(fd));
  }
  dir.reset();

  // A descriptor closed and reused by another thread meanwhile is looked
  // at as it is now: only a socket connected to the broker is changed.
  int set = 0;
  for (int fd : fds) {
    sockaddr_storage peer;
    if (!TcpPeer(fd, &peer)) continue;
    bool broker_peer = false;
    for (const addrinfo* a = addresses.get(); a && !broker_peer; a = a->ai_next) {
      broker_peer = SameAddress(peer, a->ai_addr);
    }
    if (!broker_peer) continue;
    const int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++set;
  }
  return set;
}

}  // namespace komoku::bridge
