#include "bridge/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "bridge/broker_socket.h"
#include "common/fd.h"

namespace komoku::bridge {
namespace {

struct CtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

// OpenSSL's queued errors, their reasons joined ("certificate verify
// failed"), emptying the queue; `fallback` when it is empty.
std::string OpenSslErrors(const std::string& fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    std::string text = reason ? reason : "OpenSSL error " + std::to_string(e);
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? fallback : out;
}

// Gives OpenSSL the key's password, or none: never its terminal prompt.
int PasswordCallback(char* buf, int size, int /*rwflag*/, void* userdata) {
  const std::string* password = static_cast<const std::string*>(userdata);
  if (!password || password->empty() || size <= 0) return 0;
  int n = static_cast<int>(std::min<size_t>(password->size(), static_cast<size_t>(size)));
  std::memcpy(buf, password->data(), static_cast<size_t>(n));
  return n;
}

std::string X509Time(const ASN1_TIME* t) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// A client context with the files of `tls` loaded; on error `*field` names
// the option at fault ("ca_file", "cert_file", "key_file").
Result<CtxPtr> NewContext(const TlsOptions& tls, std::string* field) {
  ERR_clear_error();
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Status::IOError("cannot create a TLS context: " + OpenSslErrors("?"));
  // userdata must outlive the context: `tls` does, for every caller here.
  SSL_CTX_set_default_passwd_cb(ctx.get(), &PasswordCallback);
  SSL_CTX_set_default_passwd_cb_userdata(ctx.get(), const_cast<std::string*>(&tls.key_password));
  if (!tls.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca_file.c_str(), nullptr) != 1) {
      *field = "ca_file";
      return Status::InvalidArgument("'" + tls.ca_file +
                                     "': no CA certificate loaded: " + OpenSslErrors("?"));
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    *field = "ca_file";
    return Status::InvalidArgument("cannot load the system's CA store: " + OpenSslErrors("?"));
  }
  if (tls.cert_file.empty()) return ctx;
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
    *field = "cert_file";
    return Status::InvalidArgument("'" + tls.cert_file +
                                   "': no certificate loaded: " + OpenSslErrors("?"));
  }
  if (X509* cert = SSL_CTX_get0_certificate(ctx.get())) {
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
      *field = "cert_file";
      return Status::InvalidArgument("'" + tls.cert_file + "': the certificate expired (" +
                                     X509Time(X509_get0_notAfter(cert)) + ")");
    }
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
      *field = "cert_file";
      return Status::InvalidArgument("'" + tls.cert_file +
                                     "': the certificate is not valid before " +
                                     X509Time(X509_get0_notBefore(cert)));
    }
  }
  const std::string& key = tls.key_file.empty() ? tls.cert_file : tls.key_file;
  *field = tls.key_file.empty() ? "cert_file" : "key_file";
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    const std::string reason = OpenSslErrors("?");
    if (reason.find("key values mismatch") != std::string::npos) {
      return Status::InvalidArgument(
          "'" + key + "': the key does not belong to the certificate in '" + tls.cert_file + "'");
    }
    return Status::InvalidArgument("'" + key + "': no private key loaded: " + reason +
                                   (tls.key_password.empty() ? "" : " (is the password right?)"));
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    ERR_clear_error();
    return Status::InvalidArgument(
        "'" + key + "': the key does not belong to the certificate in '" + tls.cert_file + "'");
  }
  field->clear();
  return ctx;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

void SetTimeouts(int fd, std::chrono::milliseconds timeout) {
  struct timeval tv;
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// A connected blocking TCP socket, or IOError.
Result<int> Connect(const BrokerAddress& hp, std::chrono::milliseconds timeout) {
  struct addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* found = nullptr;
  int rc = getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &found);
  if (rc != 0) return Status::IOError("cannot resolve '" + hp.host + "': " + gai_strerror(rc));
  std::unique_ptr<struct addrinfo, decltype(&freeaddrinfo)> list(found, &freeaddrinfo);
  std::string last = "no address";
  for (struct addrinfo* a = found; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    Fd owned(fd);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = std::strerror(errno);
        continue;
      }
      struct pollfd p = {fd, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
        last = "timed out";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last = std::strerror(err);
        continue;
      }
    }
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    SetTimeouts(fd, timeout);
    int out = ::dup(fd);  // `owned` closes the original
    if (out < 0) return Status::IOError(std::string("dup: ") + std::strerror(errno));
    return out;
  }
  return Status::IOError("cannot connect to " + hp.host + ":" + hp.port + ": " + last);
}

}  // namespace

bool IsTlsUrl(const std::string& url) {
  return url.rfind("ssl://", 0) == 0 || url.rfind("mqtts://", 0) == 0;
}

Status CheckTlsFiles(const TlsOptions& tls, std::string* field) {
  std::string at;
  Result<CtxPtr> ctx = NewContext(tls, &at);
  if (field) *field = at;
  return ctx.status();
}

Status CheckTlsHandshake(const std::string& url, const TlsOptions& tls,
                         std::chrono::milliseconds timeout) {
  Result<BrokerAddress> hp = ParseBrokerUrl(url);
  if (!hp.ok()) return hp.status();
  std::string field;
  Result<CtxPtr> ctx = NewContext(tls, &field);
  if (!ctx.ok()) return ctx.status().WithContext(field);
  Result<int> fd = Connect(*hp, timeout);
  if (!fd.ok()) return fd.status();
  Fd sock(*fd);
  SslPtr ssl(SSL_new(ctx->get()));
  if (!ssl) return Status::IOError("SSL_new: " + OpenSslErrors("?"));
  SSL_set_fd(ssl.get(), sock.get());
  const bool ip = IsIpAddress(hp->host);
  if (!ip) SSL_set_tlsext_host_name(ssl.get(), hp->host.c_str());
  if (tls.verify) {
    // The checks Paho makes: the chain (enableServerCertAuth) and the host
    // name or IP address (verify, X509_check_host / X509_check_ip_asc).
    SSL_set_verify(ssl.get(), SSL_VERIFY_PEER, nullptr);
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), hp->host.c_str());
    } else {
      SSL_set1_host(ssl.get(), hp->host.c_str());
    }
  } else {
    SSL_set_verify(ssl.get(), SSL_VERIFY_NONE, nullptr);
  }
  ERR_clear_error();
  errno = 0;
  int rc = SSL_connect(ssl.get());
  if (rc != 1) {
    const int error = SSL_get_error(ssl.get(), rc);
    const int saved_errno = errno;
    std::string reason = OpenSslErrors("");
    const long verify = SSL_get_verify_result(ssl.get());
    if (verify != X509_V_OK) {
      reason += std::string(reason.empty() ? "" : ": ") + X509_verify_cert_error_string(verify);
    }
    if (reason.empty()) {
      if (error == SSL_ERROR_SYSCALL && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
        return Status::IOError("no TLS answer from " + hp->host + ":" + hp->port);
      }
      reason = saved_errno != 0 ? std::strerror(saved_errno)
                                : "the broker closed the connection (is it a TLS listener?)";
    }
    return Status::InvalidArgument("TLS handshake with " + hp->host + ":" + hp->port +
                                   " failed: " + reason);
  }
  // TLS 1.3 sends the client's certificate after the client's handshake is
  // done: a broker that refuses it says so in an alert that comes next.
  SetTimeouts(sock.get(), std::chrono::milliseconds(300));
  char byte = 0;
  ERR_clear_error();
  rc = SSL_read(ssl.get(), &byte, 1);
  if (rc <= 0 && SSL_get_error(ssl.get(), rc) == SSL_ERROR_SSL) {
    return Status::InvalidArgument(
        "the broker " + hp->host + ":" + hp->port +
        " refused the connection after the TLS handshake: " + OpenSslErrors("?") +
        (tls.cert_file.empty() ? " (it may want a client certificate)" : ""));
  }
  ERR_clear_error();
  SSL_shutdown(ssl.get());
  return Status::Ok();
}

}  // namespace komoku::bridge
