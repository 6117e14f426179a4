#include "net/tls_context.hpp"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ssl.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace relaybait::net {
namespace {

namespace fs = std::filesystem;

// Postfix 3.7 defaults: smtpd_tls_ciphers = medium, tls_medium_cipherlist, tls_eecdh_auto_curves.
// OpenSSL 3 refuses TLS 1.0/1.1 (SHA-1/MD5 handshake signatures) above security level 0, and
// Postfix on Debian 12 accepts them, so the level is 0 like a stock install behaves.
constexpr const char* medium_cipherlist = "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH:@SECLEVEL=0";
constexpr const char* tls13_ciphersuites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
constexpr const char* groups = "X25519:X448:P-256:P-521:P-384";
constexpr long session_lifetime_seconds = 7200;  // the ticket lifetime hint Postfix's clients see
constexpr long validity_days = 3650;

struct openssl_free {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
    void operator()(X509* cert) const { X509_free(cert); }
    void operator()(X509_EXTENSION* ext) const { X509_EXTENSION_free(ext); }
    void operator()(BIO* bio) const { BIO_free(bio); }
    void operator()(BIGNUM* number) const { BN_free(number); }
    void operator()(ASN1_INTEGER* number) const { ASN1_INTEGER_free(number); }
};
template <typename T>
using owned = std::unique_ptr<T, openssl_free>;

std::string openssl_errors() {
    std::string text;
    while (unsigned long code = ERR_get_error()) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof buffer);
        text += text.empty() ? "" : "; ";
        text += buffer;
    }
    return text.empty() ? "unknown OpenSSL error" : text;
}

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string(what) + ": " + openssl_errors());
}

// 20 random bytes, positive and without a leading zero so the DER integer stays 20 bytes.
void set_random_serial(X509* cert) {
    unsigned char bytes[20];
    check(RAND_bytes(bytes, sizeof bytes) == 1, "RAND_bytes");
    bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7f) | 0x01);
    owned<BIGNUM> number(BN_bin2bn(bytes, sizeof bytes, nullptr));
    check(number != nullptr, "BN_bin2bn");
    owned<ASN1_INTEGER> serial(BN_to_ASN1_INTEGER(number.get(), nullptr));
    check(serial != nullptr && X509_set_serialNumber(cert, serial.get()) == 1, "X509_set_serialNumber");
}

void add_extension(X509* cert, int nid, const std::string& value) {
    X509V3_CTX context;
    X509V3_set_ctx_nodb(&context);
    X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
    owned<X509_EXTENSION> extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str()));
    check(extension != nullptr && X509_add_ext(cert, extension.get(), -1) == 1, "X509_add_ext");
}

void set_names(X509* cert, const std::string& hostname) {
    X509_NAME* name = X509_get_subject_name(cert);
    check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(hostname.c_str()),
                                     -1, -1, 0) == 1,
          "X509_NAME_add_entry_by_txt");
    check(X509_set_issuer_name(cert, name) == 1, "X509_set_issuer_name");
}

// Same fields, in the same order, as the certificate `make-ssl-cert` gives a Debian host.
owned<X509> make_certificate(EVP_PKEY* key, const std::string& hostname) {
    owned<X509> cert(X509_new());
    check(cert != nullptr && X509_set_version(cert.get(), X509_VERSION_3) == 1, "X509_set_version");
    set_random_serial(cert.get());
    check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0) != nullptr, "notBefore");
    check(X509_time_adj_ex(X509_getm_notAfter(cert.get()), validity_days, 0, nullptr) != nullptr, "notAfter");
    set_names(cert.get(), hostname);
    check(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
    add_extension(cert.get(), NID_subject_key_identifier, "hash");
    add_extension(cert.get(), NID_authority_key_identifier, "keyid:always");
    add_extension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert.get(), NID_subject_alt_name, "DNS:" + hostname);
    check(X509_sign(cert.get(), key, EVP_sha256()) > 0, "X509_sign");
    return cert;
}

template <typename Write>
std::string to_pem(Write write) {
    owned<BIO> bio(BIO_new(BIO_s_mem()));
    check(bio != nullptr && write(bio.get()) == 1, "PEM_write");
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(size));
}

[[noreturn]] void fail_errno(const std::string& what, const fs::path& file) {
    throw std::runtime_error(what + " " + file.string() + ": " + std::strerror(errno));
}

// Writes through a temporary file created with `mode`, fsynced, then renamed into place.
void write_file_atomically(const fs::path& file, const std::string& content, mode_t mode) {
    const fs::path temporary = file.string() + ".tmp";
    ::unlink(temporary.c_str());
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) fail_errno("cannot create", temporary);
    std::size_t written = 0;
    while (written < content.size()) {
        const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            fail_errno("cannot write", temporary);
        }
        written += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) fail_errno("cannot write", temporary);
    if (::rename(temporary.c_str(), file.c_str()) != 0) fail_errno("cannot rename to", file);
}

owned<X509> read_certificate(const fs::path& file) {
    owned<BIO> bio(BIO_new_file(file.c_str(), "r"));
    if (!bio) return nullptr;
    return owned<X509>(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

owned<EVP_PKEY> read_private_key(const fs::path& file) {
    owned<BIO> bio(BIO_new_file(file.c_str(), "r"));
    if (!bio) return nullptr;
    return owned<EVP_PKEY>(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// The generated pair is reusable when it parses, matches, and names this hostname.
bool reusable(const tls_files& files, const std::string& hostname) {
    auto cert = read_certificate(files.certificate);
    auto key = read_private_key(files.private_key);
    const bool usable = cert && key && X509_check_private_key(cert.get(), key.get()) == 1 &&
                        X509_check_host(cert.get(), hostname.data(), hostname.size(), X509_CHECK_FLAG_NO_WILDCARDS,
                                        nullptr) == 1;
    ERR_clear_error();
    return usable;
}

void generate(const tls_files& files, const std::string& hostname) {
    owned<EVP_PKEY> key(EVP_RSA_gen(2048));
    check(key != nullptr, "EVP_RSA_gen");
    owned<X509> cert = make_certificate(key.get(), hostname);
    const std::string key_pem = to_pem([&](BIO* bio) {
        return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    });
    const std::string cert_pem = to_pem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert.get()); });
    write_file_atomically(files.private_key, key_pem, 0600);
    write_file_atomically(files.certificate, cert_pem, 0644);
}

[[noreturn]] void fail_to_load(const fs::path& file, const char* key, const std::string& what) {
    throw config::config_error(file.string(), 0, key, what);
}

void load_identity(boost::asio::ssl::context& context, const tls_files& files, bool configured) {
    SSL_CTX* native = context.native_handle();
    const char* cert_key = configured ? "tls.certificate" : "";
    const char* key_key = configured ? "tls.private_key" : "";
    if (SSL_CTX_use_certificate_chain_file(native, files.certificate.c_str()) != 1)
        fail_to_load(files.certificate, cert_key, "cannot load the certificate: " + openssl_errors());
    if (SSL_CTX_use_PrivateKey_file(native, files.private_key.c_str(), SSL_FILETYPE_PEM) != 1)
        fail_to_load(files.private_key, key_key, "cannot load the private key: " + openssl_errors());
    if (SSL_CTX_check_private_key(native) != 1)
        fail_to_load(files.private_key, key_key, "the private key does not match the certificate: " + openssl_errors());
}

void apply_postfix_defaults(boost::asio::ssl::context& context) {
    SSL_CTX* native = context.native_handle();
    context.set_options(boost::asio::ssl::context::default_workarounds | boost::asio::ssl::context::no_sslv2 |
                        boost::asio::ssl::context::no_sslv3 | boost::asio::ssl::context::single_dh_use);
    check(SSL_CTX_set_min_proto_version(native, TLS1_VERSION) == 1, "SSL_CTX_set_min_proto_version");
    check(SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION) == 1, "SSL_CTX_set_max_proto_version");
    check(SSL_CTX_set_cipher_list(native, medium_cipherlist) == 1, "SSL_CTX_set_cipher_list");
    check(SSL_CTX_set_ciphersuites(native, tls13_ciphersuites) == 1, "SSL_CTX_set_ciphersuites");
    check(SSL_CTX_set1_groups_list(native, groups) == 1, "SSL_CTX_set1_groups_list");
    SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);  // no client certificate requested
    SSL_CTX_set_timeout(native, session_lifetime_seconds);
    SSL_CTX_clear_options(native, SSL_OP_NO_TICKET);       // session tickets on
    // A client may not renegotiate (TLS 1.2 and older): each renegotiation is a full handshake
    // on the one network thread, requested at will inside a session (CVE-2011-1473).
    SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
}

}  // namespace

tls_files ensure_self_signed_certificate(const fs::path& data_dir, const std::string& hostname) {
    const fs::path directory = data_dir / "tls";
    fs::create_directories(directory);
    fs::permissions(directory, fs::perms::owner_all, fs::perm_options::replace);
    tls_files files{directory / "cert.pem", directory / "key.pem"};
    if (reusable(files, hostname)) return files;
    generate(files, hostname);
    spdlog::info("tls: generated a self-signed certificate for {} in {}", hostname, directory.string());
    return files;
}

boost::asio::ssl::context make_server_tls_context(const config::settings& settings) {
    boost::asio::ssl::context context(boost::asio::ssl::context::tls_server);
    apply_postfix_defaults(context);
    const bool configured = !settings.tls.certificate.empty();
    const tls_files files = configured ? tls_files{settings.tls.certificate, settings.tls.private_key}
                                       : ensure_self_signed_certificate(settings.data_dir, settings.hostname);
    load_identity(context, files, configured);
    return context;
}

smtp::tls_facts negotiated_tls(const ssl_st* ssl) {
    smtp::tls_facts facts;
    if (ssl == nullptr) return facts;
    facts.version = SSL_get_version(ssl);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl)) facts.cipher = SSL_CIPHER_get_name(cipher);
    return facts;
}

}  // namespace relaybait::net
