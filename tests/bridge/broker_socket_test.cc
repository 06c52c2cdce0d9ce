// The broker URL's host and port, and TCP_NODELAY set on the process's
// socket to the broker and on no other.
#include "bridge/broker_socket.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "common/fd.h"

namespace komoku::bridge {
namespace {

TEST(ParseBrokerUrl, HostAndPort) {
  struct Case {
    std::string url, host, port;
  };
  for (const Case& c : std::vector<Case>{
           {"tcp://localhost:1883", "localhost", "1883"},
           {"mqtt://broker.lan", "broker.lan", "1883"},
           {"ssl://broker.lan", "broker.lan", "8883"},
           {"mqtts://10.0.0.2:8884", "10.0.0.2", "8884"},
           {"tcp://[::1]:1884", "::1", "1884"},
           {"mqtts://[fe80::1]", "fe80::1", "8883"},
           {"tcp://broker:1883/ignored", "broker", "1883"},
       }) {
    Result<BrokerAddress> a = ParseBrokerUrl(c.url);
    ASSERT_TRUE(a.ok()) << c.url << ": " << a.status().message();
    EXPECT_EQ(a->host, c.host) << c.url;
    EXPECT_EQ(a->port, c.port) << c.url;
  }
}

TEST(ParseBrokerUrl, Refused) {
  for (const char* url : {"localhost:1883", "ws://broker:80", "tcp://:1883",
                          "tcp://broker:", "tcp://[::1", "tcp://[::1]1883", ""}) {
    EXPECT_TRUE(ParseBrokerUrl(url).status().IsInvalidArgument()) << url;
  }
}

bool NoDelay(int fd) {
  int on = 0;
  socklen_t len = sizeof on;
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
  return on != 0;
}

TEST(SetNoDelayToBroker, OnlyTheSocketToTheBroker) {
  // A "broker" listening on loopback, a client connected to it, and the
  // accepted end: only the client's peer is the broker's address.
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(listener.get(), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));

  Fd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(client.get(), 0);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  Fd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_GE(accepted.get(), 0);
  ASSERT_FALSE(NoDelay(client.get()));

  Result<int> set = SetNoDelayToBroker("tcp://127.0.0.1:" + port);
  ASSERT_TRUE(set.ok()) << set.status().message();
  EXPECT_EQ(*set, 1);
  EXPECT_TRUE(NoDelay(client.get()));
  EXPECT_FALSE(NoDelay(accepted.get()));
  EXPECT_FALSE(NoDelay(listener.get()));

  // Another port: nothing of this process is connected there.
  const std::string other = port == "1" ? "2" : "1";
  set = SetNoDelayToBroker("tcp://127.0.0.1:" + other);
  ASSERT_TRUE(set.ok()) << set.status().message();
  EXPECT_EQ(*set, 0);
}

TEST(SetNoDelayToBroker, BadUrlOrName) {
  EXPECT_TRUE(SetNoDelayToBroker("localhost:1883").status().IsInvalidArgument());
  EXPECT_TRUE(SetNoDelayToBroker("tcp://no-such-host.invalid:1883").status().IsIOError());
}

}  // namespace
}  // namespace komoku::bridge
