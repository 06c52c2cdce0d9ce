// TLS to the broker (ssl:// and mqtts:// URLs): the settings, and two checks
// done with OpenSSL directly, with the settings Paho is given, so that a bad
// file or a failed handshake is reported with OpenSSL's reason.
//
// Why not Paho's own error callback: in Paho C++ 1.2.0 (Debian 12) the
// callback's context points into a copy of the connect options that dies
// when connect() returns, so a TLS error after that is a use after free
// (eclipse-paho/paho.mqtt.cpp#325, #439); and without a callback Paho C
// drops OpenSSL's reason ("TCP/TLS connect failure" is all it says).
#pragma once

#include <chrono>
#include <string>

#include "common/status.h"

namespace komoku::bridge {

struct TlsOptions {
  // PEM file of the CA certificate(s) the broker's certificate must chain
  // to; empty: the system's CA store (/etc/ssl/certs).
  std::string ca_file;
  // Komoku's client certificate (PEM, may hold the chain) and its private
  // key; both empty: no client certificate. The key may be in cert_file.
  std::string cert_file;
  std::string key_file;
  // The password of an encrypted key; empty: the key is not encrypted.
  std::string key_password;
  // Check that the broker's certificate chains to a trusted CA and names the
  // host of the broker URL (DNS name or IP address). false: encrypted, but
  // any certificate is accepted.
  bool verify = true;
};

// True for the URLs that mean TLS: ssl:// and mqtts://.
bool IsTlsUrl(const std::string& url);

// Loads the files as a TLS client would: the CA file, the certificate
// chain, the key (with its password) and checks that the key belongs to the
// certificate, and that it has not expired. InvalidArgument naming the file
// and OpenSSL's reason; `*field` (when not null) names the option at fault:
// "ca_file", "cert_file" or "key_file".
Status CheckTlsFiles(const TlsOptions& tls, std::string* field);

// Opens a TCP connection to the broker of `url` and makes a TLS handshake
// with `tls`, then closes it without speaking MQTT. Waits up to `timeout`
// for each step, and a moment after the handshake for the broker to refuse
// Komoku's certificate (TLS 1.3 does that after the handshake).
// Ok: the handshake worked. IOError: the broker could not be reached (a
// matter for the MQTT connection's retries, not TLS). InvalidArgument: the
// handshake failed, with OpenSSL's reason ("certificate verify failed:
// unable to get local issuer certificate").
Status CheckTlsHandshake(const std::string& url, const TlsOptions& tls,
                         std::chrono::milliseconds timeout);

}  // namespace komoku::bridge
