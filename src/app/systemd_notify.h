// Talks to systemd over $NOTIFY_SOCKET (sd_notify(3)): readiness, status
// lines, watchdog pings, stopping. Every call is a no-op when the service
// was not started by systemd with Type=notify (NOTIFY_SOCKET unset).
//
// Owned by the main thread.
#pragma once

#include <chrono>
#include <string>

namespace komoku::app {

class SystemdNotifier {
 public:
  SystemdNotifier();

  // True when systemd expects WATCHDOG=1 pings (WatchdogSec= is set).
  bool watchdog_enabled() const { return watchdog_ > std::chrono::microseconds(0); }
  // The watchdog interval systemd set; zero when disabled.
  std::chrono::microseconds watchdog_interval() const { return watchdog_; }

  void Ready(const std::string& status);
  // Sends STATUS= only when `status` differs from the last one sent.
  void SetStatus(const std::string& status);
  void WatchdogPing();
  // Around a configuration reload (SIGHUP): RELOADING=1, then Ready() again.
  void Reloading();
  void Stopping();

 private:
  void Send(const std::string& state);

  std::chrono::microseconds watchdog_{0};
  std::string last_status_;
};

}  // namespace komoku::app
