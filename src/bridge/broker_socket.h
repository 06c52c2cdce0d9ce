// The TCP connection to the broker, as far as Komoku looks past Paho: the
// host and port a broker URL names, and TCP_NODELAY on the socket Paho
// opened to them.
//
// Why TCP_NODELAY: Paho C never sets it (1.3.12 in Debian 12, nor 1.3.13),
// so Nagle's algorithm keeps a small segment back while an earlier one is
// unacknowledged. Komoku acknowledges each QoS 1 message it receives (a
// PUBACK) and publishes the key's state a moment later on the same socket,
// and the broker delays its TCP acknowledgement: the state waited for the
// broker's next message to Komoku (about 1 ms at 1,000 messages/s) or, when
// none came, for the broker's delayed-ACK timer (about 40 ms on Linux), so
// every state of a quiet home came 40 ms late (bench/ingest_bench.cc, part
// 2). Paho offers no hook for its socket, so it is found by its peer
// address.
//
// Thread-safe.
#pragma once

#include <string>

#include "common/status.h"

namespace komoku::bridge {

struct BrokerAddress {
  std::string host;  // a name or an IP address, without brackets
  std::string port;
};

// "tcp://host:1883", "mqtts://[::1]:8883"; without a port, the scheme's as
// Paho takes it: 1883 for tcp:// and mqtt://, 8883 for ssl:// and mqtts://.
// InvalidArgument for anything else.
Result<BrokerAddress> ParseBrokerUrl(const std::string& url);

// Sets TCP_NODELAY on every TCP socket of this process connected to the
// broker of `url` (an address its host resolves to, at its port) and
// returns how many there were: 1 while Paho is connected, 0 when the peer
// is something else (a proxy, or the name resolves elsewhere now). IOError
// when the host does not resolve or /proc/self/fd cannot be listed. Blocks
// for the name lookup: not for Paho's threads.
Result<int> SetNoDelayToBroker(const std::string& url);

}  // namespace komoku::bridge
