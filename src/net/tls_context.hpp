#pragma once
// The server side of TLS (STARTTLS on smtp/submission, implicit TLS on smtps), shaped like a
// stock Debian Postfix 3.7 with OpenSSL 3: TLS 1.0 to 1.3, Postfix's "medium" cipher grade,
// X25519 first, session tickets, no ALPN, no client certificate requested.
#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <string>

#include "config/config.hpp"
#include "smtp/engine.hpp"

struct ssl_st;

namespace relaybait::net {

struct tls_files {
    std::filesystem::path certificate;
    std::filesystem::path private_key;
};

// DATA/tls/{cert.pem,key.pem}: reused when they hold a certificate for `hostname` and its key,
// otherwise (first start, hostname changed, damaged files) generated afresh: RSA 2048, SHA-256,
// subject = issuer = "CN = <hostname>", SAN DNS:<hostname>, CA:TRUE (critical), key identifiers,
// random 20-byte serial, valid 10 years from now; key file mode 0600. Throws std::runtime_error.
tls_files ensure_self_signed_certificate(const std::filesystem::path& data_dir, const std::string& hostname);

// The context every TLS session of `serve` shares. Uses [tls] certificate/private_key when set
// (a file that cannot be loaded is a config::config_error), else the generated certificate.
boost::asio::ssl::context make_server_tls_context(const config::settings& settings);

// The negotiated protocol and cipher of an established session, as OpenSSL names them
// ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), for the session log and the Received header.
smtp::tls_facts negotiated_tls(const ssl_st* ssl);

}  // namespace relaybait::net
