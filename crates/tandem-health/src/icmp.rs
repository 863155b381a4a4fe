//! ICMP echo probes (IPv4 and IPv6) over raw sockets. Placeholder: being written.
