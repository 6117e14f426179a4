#include "net/tls_context.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ssl.hpp>
#include <fstream>
#include <random>
#include <thread>

namespace relaybait::net {
namespace {

namespace fs = std::filesystem;

class temp_dir {
public:
    temp_dir() {
        std::random_device random;
        path_ = fs::temp_directory_path() / ("tls-test-" + std::to_string(random()));
        fs::create_directories(path_);
    }
    ~temp_dir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

struct x509_deleter {
    void operator()(X509* cert) const { X509_free(cert); }
};
using x509_ptr = std::unique_ptr<X509, x509_deleter>;

x509_ptr read_cert(const fs::path& file) {
    FILE* in = std::fopen(file.c_str(), "r");
    if (in == nullptr) return nullptr;
    x509_ptr cert(PEM_read_X509(in, nullptr, nullptr, nullptr));
    std::fclose(in);
    return cert;
}

std::string fingerprint(const fs::path& file) {
    auto cert = read_cert(file);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    X509_digest(cert.get(), EVP_sha256(), digest, &size);
    return std::string(reinterpret_cast<char*>(digest), size);
}

std::string one_line(const X509_NAME* name) {
    BIO* bio = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(bio, name, 0, XN_FLAG_ONELINE);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    return text;
}

std::string printed(X509* cert) {
    BIO* bio = BIO_new(BIO_s_mem());
    X509_print(bio, cert);
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio, &data);
    std::string text(data, static_cast<std::size_t>(size));
    BIO_free(bio);
    return text;
}

config::settings settings_in(const fs::path& data_dir, std::string hostname = "mx1.example.net") {
    config::settings settings;
    settings.data_dir = data_dir;
    settings.hostname = std::move(hostname);
    return settings;
}

TEST(tls_certificate, generated_once_and_reused) {
    temp_dir dir;
    const tls_files first = ensure_self_signed_certificate(dir.path(), "mx1.example.net");
    EXPECT_EQ(first.certificate, dir.path() / "tls" / "cert.pem");
    EXPECT_EQ(first.private_key, dir.path() / "tls" / "key.pem");
    const std::string before = fingerprint(first.certificate);
    const tls_files second = ensure_self_signed_certificate(dir.path(), "mx1.example.net");
    EXPECT_EQ(fingerprint(second.certificate), before);
    // Through the context too.
    make_server_tls_context(settings_in(dir.path()));
    EXPECT_EQ(fingerprint(first.certificate), before);
}

TEST(tls_certificate, regenerated_when_the_hostname_changes) {
    temp_dir dir;
    const tls_files files = ensure_self_signed_certificate(dir.path(), "mx1.example.net");
    const std::string before = fingerprint(files.certificate);
    ensure_self_signed_certificate(dir.path(), "mail.example.org");
    EXPECT_NE(fingerprint(files.certificate), before);
    EXPECT_EQ(one_line(X509_get_subject_name(read_cert(files.certificate).get())), "CN = mail.example.org");
}

TEST(tls_certificate, regenerated_when_damaged) {
    temp_dir dir;
    const tls_files files = ensure_self_signed_certificate(dir.path(), "mx1.example.net");
    std::ofstream(files.private_key) << "garbage";
    ensure_self_signed_certificate(dir.path(), "mx1.example.net");
    EXPECT_NO_THROW(make_server_tls_context(settings_in(dir.path())));
}

TEST(tls_certificate, looks_like_a_debian_snakeoil_certificate) {
    temp_dir dir;
    const tls_files files = ensure_self_signed_certificate(dir.path(), "mx1.example.net");
    auto cert = read_cert(files.certificate);
    ASSERT_TRUE(cert);
    EXPECT_EQ(X509_get_version(cert.get()), X509_VERSION_3);
    EXPECT_EQ(one_line(X509_get_subject_name(cert.get())), "CN = mx1.example.net");
    EXPECT_EQ(one_line(X509_get_issuer_name(cert.get())), "CN = mx1.example.net");
    EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_sha256WithRSAEncryption);

    EVP_PKEY* key = X509_get0_pubkey(cert.get());
    EXPECT_EQ(EVP_PKEY_get_base_id(key), EVP_PKEY_RSA);
    EXPECT_EQ(EVP_PKEY_get_bits(key), 2048);

    const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
    EXPECT_EQ(ASN1_STRING_length(serial), 20);
    EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER);  // positive

    int days = 0, seconds = 0;
    ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert.get()), X509_get0_notAfter(cert.get()));
    EXPECT_EQ(days, 3650);
    EXPECT_EQ(seconds, 0);
    ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert.get()), nullptr);  // notBefore = now
    EXPECT_EQ(days, 0);
    EXPECT_LT(seconds, 60);

    const int basic = X509_get_ext_by_NID(cert.get(), NID_basic_constraints, -1);
    ASSERT_GE(basic, 0);
    EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert.get(), basic)), 1);
    EXPECT_TRUE(X509_get_extension_flags(cert.get()) & EXFLAG_CA);
    EXPECT_EQ(X509_get_ext_count(cert.get()), 4);

    const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(cert.get());
    const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(cert.get());
    ASSERT_TRUE(ski && aki);
    EXPECT_EQ(ASN1_OCTET_STRING_cmp(ski, aki), 0);

    auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
    ASSERT_NE(names, nullptr);
    ASSERT_EQ(sk_GENERAL_NAME_num(names), 1);
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, 0);
    ASSERT_EQ(name->type, GEN_DNS);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.dNSName))), "mx1.example.net");
    GENERAL_NAMES_free(names);

    const std::string text = printed(cert.get());
    for (const char* tell : {"relaybait", "honeypot", "Relaybait", "Honeypot"}) EXPECT_EQ(text.find(tell), std::string::npos);
}

TEST(tls_certificate, key_file_is_private) {
    temp_dir dir;
    const tls_files files = ensure_self_signed_certificate(dir.path(), "mx1.example.net");
    struct stat info {};
    ASSERT_EQ(::stat(files.private_key.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat((dir.path() / "tls").c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0700u);
    EXPECT_FALSE(fs::exists(files.private_key.string() + ".tmp"));
}

TEST(tls_context, configured_files_are_used_and_errors_name_the_key) {
    temp_dir generated, data;
    const tls_files files = ensure_self_signed_certificate(generated.path(), "mx9.example.net");
    config::settings settings = settings_in(data.path());
    settings.tls = {files.certificate, files.private_key};
    EXPECT_NO_THROW(make_server_tls_context(settings));
    EXPECT_FALSE(fs::exists(data.path() / "tls"));  // nothing generated

    settings.tls.certificate = data.path() / "missing.pem";
    try {
        make_server_tls_context(settings);
        FAIL() << "no error";
    } catch (const config::config_error& error) {
        EXPECT_EQ(error.key(), "tls.certificate");
        EXPECT_EQ(error.file(), settings.tls.certificate.string());
    }
}

// One blocking handshake over a socketpair: the server context against an OpenSSL client.
struct handshake_result {
    bool ok = false;
    smtp::tls_facts server, client;
    long ticket_hint = 0;
    bool alpn = false;
    bool client_cert_requested = false;
};

handshake_result handshake(boost::asio::ssl::context& server_context, SSL_CTX* client_context) {
    int fds[2];
    // MSG_NOSIGNAL is not used by OpenSSL's fd BIO: a peer that closed first must not kill the test.
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    ::signal(SIGPIPE, SIG_IGN);
    SSL* server = SSL_new(server_context.native_handle());
    SSL* client = SSL_new(client_context);
    SSL_set_fd(server, fds[0]);
    SSL_set_fd(client, fds[1]);
    handshake_result result;
    bool server_ok = false;
    std::thread server_thread([&] {
        server_ok = SSL_accept(server) == 1 && SSL_write(server, "x", 1) == 1;
        if (server_ok) result.server = negotiated_tls(server);
        SSL_shutdown(server);
    });
    char byte = 0;
    const bool client_ok = SSL_connect(client) == 1 && SSL_read(client, &byte, 1) == 1;  // reads the tickets too
    if (client_ok) {
        result.client = negotiated_tls(client);
        SSL_SESSION* session = SSL_get1_session(client);
        result.ticket_hint = static_cast<long>(SSL_SESSION_get_ticket_lifetime_hint(session));
        SSL_SESSION_free(session);
        const unsigned char* alpn = nullptr;
        unsigned int alpn_size = 0;
        SSL_get0_alpn_selected(client, &alpn, &alpn_size);
        result.alpn = alpn_size != 0;
        result.client_cert_requested = SSL_get0_peer_CA_list(client) != nullptr;
    }
    ::shutdown(fds[1], SHUT_RDWR);
    server_thread.join();
    result.ok = client_ok && server_ok;
    if (!result.ok) ADD_FAILURE() << "handshake failed: " << ERR_error_string(ERR_get_error(), nullptr);
    SSL_free(server);
    SSL_free(client);
    ::close(fds[0]);
    ::close(fds[1]);
    return result;
}

struct client_context {
    explicit client_context(int version = 0, const char* ciphers = nullptr) : ctx(SSL_CTX_new(TLS_client_method())) {
        if (version != 0) {
            SSL_CTX_set_min_proto_version(ctx, version);
            SSL_CTX_set_max_proto_version(ctx, version);
        }
        if (ciphers != nullptr) SSL_CTX_set_cipher_list(ctx, ciphers);
    }
    ~client_context() { SSL_CTX_free(ctx); }
    SSL_CTX* ctx;
};

TEST(tls_context, default_client_gets_tls13_aes256) {
    temp_dir dir;
    auto context = make_server_tls_context(settings_in(dir.path()));
    client_context client;
    const auto result = handshake(context, client.ctx);
    ASSERT_TRUE(result.ok);
    EXPECT_EQ(result.server.version, "TLSv1.3");
    EXPECT_EQ(result.server.cipher, "TLS_AES_256_GCM_SHA384");
    EXPECT_EQ(result.client.version, "TLSv1.3");
    EXPECT_EQ(result.client.cipher, "TLS_AES_256_GCM_SHA384");
    EXPECT_EQ(result.ticket_hint, 7200);
    EXPECT_FALSE(result.alpn);
}

TEST(tls_context, old_clients_are_accepted_like_postfix) {
    temp_dir dir;
    auto context = make_server_tls_context(settings_in(dir.path()));
    struct expectation {
        int version;
        const char* name;
        const char* cipher;
    };
    for (const auto& expected : {expectation{TLS1_VERSION, "TLSv1", "ECDHE-RSA-AES256-SHA"},
                                 expectation{TLS1_1_VERSION, "TLSv1.1", "ECDHE-RSA-AES256-SHA"},
                                 expectation{TLS1_2_VERSION, "TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"}}) {
        client_context client(expected.version, "ALL:@SECLEVEL=0");
        const auto result = handshake(context, client.ctx);
        ASSERT_TRUE(result.ok) << expected.name;
        EXPECT_EQ(result.server.version, expected.name);
        EXPECT_EQ(result.server.cipher, expected.cipher) << expected.name;
    }
}

// Renegotiation would let one session ask for any number of full handshakes.
TEST(tls_context, clients_cannot_renegotiate) {
    temp_dir dir;
    auto context = make_server_tls_context(settings_in(dir.path()));
    EXPECT_NE(SSL_CTX_get_options(context.native_handle()) & SSL_OP_NO_RENEGOTIATION, 0u);
}

TEST(tls_context, negotiated_tls_of_nothing_is_empty) {
    const auto facts = negotiated_tls(nullptr);
    EXPECT_TRUE(facts.version.empty());
    EXPECT_TRUE(facts.cipher.empty());
}

}  // namespace
}  // namespace relaybait::net
