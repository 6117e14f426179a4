#include "net/relay_settings.hpp"

namespace relaybait::net {

relay::relay_limits relay_limits_from(const config::relay_config& relay) {
    relay::relay_limits limits;
    limits.enabled = relay.enabled;
    limits.daily = relay.daily;
    limits.per_recipient_daily = relay.per_recipient_daily;
    limits.per_sender_daily = relay.per_sender_daily;
    limits.per_client_ip_daily = relay.per_client_ip_daily;
    limits.per_domain_daily = relay.per_domain_daily;
    limits.max_size = relay.max_size_bytes;
    limits.max_recipients = relay.max_recipients;
    limits.test_mode = relay.test_mode;
    limits.test_server = relay.test_server;
    limits.test_recipient = relay.test_recipient;
    return limits;
}

relay::relay_service_options relay_options_from(const config::settings& settings) {
    const auto& relay = settings.relay;
    relay::relay_service_options options;
    options.data_dir = settings.data_dir;
    options.limits = relay_limits_from(relay);
    options.hostname = settings.hostname;
    options.sensor = settings.sensor_name();
    options.dns.servers = relay.dns_servers;
    options.dns.timeout = std::chrono::milliseconds(relay.dns_timeout_ms);
    options.force_ipv4_domains = relay.force_ipv4_domains;
    options.ports = relay.ports;
    options.max_mx_hosts = relay.max_mx_hosts;
    options.max_attempts = relay.max_attempts;
    options.retry_base = std::chrono::seconds(relay.retry_base_seconds);
    options.retry_max = std::chrono::seconds(relay.retry_max_seconds);
    options.poll_interval = std::chrono::milliseconds(relay.poll_interval_ms);
    options.client.connect_timeout = std::chrono::seconds(relay.connect_timeout_seconds);
    options.client.command_timeout = std::chrono::seconds(relay.command_timeout_seconds);
    options.client.starttls = relay.starttls;
    options.allow_private_destinations = relay.allow_private_destinations;
    return options;
}

}  // namespace relaybait::net
