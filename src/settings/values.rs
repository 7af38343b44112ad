//! Parsers of flag and environment values: Go durations, log levels, listen addresses,
//! groups. Each gives `None` for a value it cannot use; the caller names the flag.

use crate::goflag::Parsed;
use std::net::SocketAddr;
use std::time::Duration;

/// Parses a duration: plain seconds (`60`) or Go-style units (`1m30s`, `500ms`).
pub fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * scale).ok()?;
    }
    Some(total)
}

pub(super) fn parse_log_level(value: &str) -> Option<tracing::level_filters::LevelFilter> {
    use tracing::level_filters::LevelFilter;
    Some(match value.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        "off" => LevelFilter::OFF,
        _ => return None,
    })
}

/// `:8080` means every address, IPv6 and IPv4, as in Go.
pub(super) fn parse_listen_addr(value: &str) -> Option<SocketAddr> {
    let full = if value.starts_with(':') {
        format!("[::]{value}")
    } else {
        value.to_string()
    };
    full.parse().ok()
}

/// A group id from a number or a name in /etc/group.
pub(super) fn resolve_group(text: &str) -> Option<u32> {
    if let Ok(gid) = text.parse::<u32>() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut parts = line.split(':');
        (parts.next()? == text).then_some(())?;
        parts.nth(1)?.parse().ok()
    })
}

/// A flag's value, unless it is unset or empty.
pub(super) fn nonempty<'a>(flags: &'a Parsed, name: &str) -> Option<&'a str> {
    flags.get(name).filter(|v| !v.is_empty())
}
