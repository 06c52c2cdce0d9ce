#include "app/systemd_notify.h"

#include <systemd/sd-daemon.h>

#include <cstdint>

namespace komoku::app {

SystemdNotifier::SystemdNotifier() {
  uint64_t usec = 0;
  // unset_environment=0: the variables stay for whoever inspects the process.
  if (sd_watchdog_enabled(0, &usec) > 0) {
    watchdog_ = std::chrono::microseconds(static_cast<int64_t>(usec));
  }
}

void SystemdNotifier::Send(const std::string& state) {
  // sd_notify returns 0 when NOTIFY_SOCKET is unset; an error to send is not
  // worth stopping the service for (systemd will notice a missing READY=1).
  (void)sd_notify(0, state.c_str());
}

void SystemdNotifier::Ready(const std::string& status) {
  last_status_ = status;
  Send("READY=1\nSTATUS=" + status);
}

void SystemdNotifier::SetStatus(const std::string& status) {
  if (status == last_status_) return;
  last_status_ = status;
  Send("STATUS=" + status);
}

void SystemdNotifier::WatchdogPing() { Send("WATCHDOG=1"); }

void SystemdNotifier::Reloading() { Send("RELOADING=1\nSTATUS=reloading the configuration"); }

void SystemdNotifier::Stopping() { Send("STOPPING=1\nSTATUS=stopping"); }

}  // namespace komoku::app
