//! Loopback TCP/HTTP proxies that misbehave on purpose.
