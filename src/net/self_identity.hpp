#pragma once
// The honeypot's own identity: the values of $self.ipv4, $self.ipv6, $self.ip, $self.hostname
// and $self.ports in rules (probes carry the address they were sent to). Built at start by
// serve from the configuration ([identity]), the host's interfaces and, when asked, public
// address discovery over HTTP; saved to DATA/self-identity.json so that the CLI's dry runs
// (`relaybait rules test`) compile rules against the same values as the running server.
#include <filesystem>
#include <optional>
#include <string_view>

#include "config/config.hpp"
#include "rules/rules.hpp"

namespace relaybait::net {

// Configured identity.ipv4/ipv6, then (identity.interface_addresses) every address of the
// host's interfaces (getifaddrs, interfaces that are up) that is not loopback, link-local or
// unspecified; hostname = settings.hostname; ports = effective ports of the enabled listeners.
// Addresses are in canonical text form (an IPv4-mapped IPv6 address counts as IPv4),
// deduplicated, order kept (configured first). No network I/O.
rules::self_identity identity_from_config(const config::settings& settings);

// identity_from_config, plus, when identity.discover: a GET of each identity.discover_urls
// (Boost.Beast, https verified against the system CA store and the host name, no proxy;
// identity.discover_timeout_ms for each URL in all; at most 3 redirects, followed only to http
// or https, and never from https down to http; a response of at most 256 bytes and a 2xx
// status). The body, trimmed, must be one IP literal that is not loopback, link-local,
// multicast or unspecified, else it is refused. Logs each success (info) and each failure
// (warn, with the resulting $self.ip). Never throws for network failures.
rules::self_identity discover_identity(const config::settings& settings);

// Whether an address found on an interface stands for the host: not loopback, link-local
// (169.254/16, fe80::/10) or unspecified. False for text that is not an IP literal.
bool is_self_address_candidate(std::string_view address);

// DATA/self-identity.json, written atomically (a temporary file, fsync, rename). Creates
// data_dir if needed. Throws std::system_error when the file cannot be written.
void save_identity(const std::filesystem::path& data_dir, const rules::self_identity& identity);

// The identity saved by the last serve; nullopt when the file is missing, unreadable or not
// of the expected shape.
std::optional<rules::self_identity> load_saved_identity(const std::filesystem::path& data_dir);

}  // namespace relaybait::net
