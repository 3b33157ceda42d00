//! Compose value syntaxes read as warren's: command strings split like a shell, port
//! mappings (short and long forms, ranges), volume mounts (short form), Go durations and
//! Docker sizes.

use crate::ports::PortMapping;

/// Splits a command string the way Compose does (a shell's quoting, no expansion).
pub(crate) fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' quote in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated \" quote in {s:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" quote in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A port or a range `A-B`.
fn port_range(s: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} is not a port (1-65535)")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(format!("range {s:?} ends before it starts"));
            }
            Ok((a, b))
        }
        None => one(s).map(|p| (p, p)),
    }
}

/// The warren mappings of one compose port: host address (without brackets), host ports,
/// container ports and protocol. Ranges of equal length map pairwise; a single host port
/// with a container range is refused.
pub(crate) fn port_mappings(
    host_ip: Option<&str>,
    published: Option<&str>,
    target: &str,
    proto: &str,
) -> Result<Vec<PortMapping>, String> {
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(format!(
            "protocol {proto:?} is not supported; use tcp or udp"
        ));
    }
    let (t0, t1) = port_range(target)?;
    let Some(published) = published.filter(|p| !p.is_empty()) else {
        return Err(format!(
            "container port {target} has no host port; Compose would pick a random one, \
             warren needs it written (e.g. \"{t0}:{t0}\")"
        ));
    };
    let (h0, h1) = port_range(published)?;
    if h1 - h0 != t1 - t0 {
        return Err(format!(
            "host ports {published} and container ports {target} are ranges of different lengths"
        ));
    }
    if t1 - t0 >= 100 {
        return Err(format!("the range {target} is longer than 100 ports"));
    }
    let ip = match host_ip.filter(|i| !i.is_empty()) {
        Some(ip) if ip.contains(':') => format!("[{ip}]:"),
        Some(ip) => format!("{ip}:"),
        None => String::new(),
    };
    (0..=(t1 - t0))
        .map(|i| {
            let text = format!("{ip}{}:{}/{proto}", h0 + i, t0 + i);
            PortMapping::parse(&text).map_err(|e| e.to_string())
        })
        .collect()
}

/// A mapping as written in warren.toml: the canonical form without the default `/tcp`.
pub(crate) fn port_text(p: &PortMapping) -> String {
    let s = p.to_string();
    s.strip_suffix("/tcp").map(str::to_string).unwrap_or(s)
}

/// The short port syntax: `[IP:][HOST:]CONTAINER[/PROTO]`, an IPv6 address in brackets.
pub(crate) fn short_port(s: &str) -> Result<Vec<PortMapping>, String> {
    let (spec, proto) = s.rsplit_once('/').unwrap_or((s, "tcp"));
    let (ip, rest) = if let Some(after) = spec.strip_prefix('[') {
        let (ip, rest) = after
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in {s:?}"))?;
        (
            Some(ip),
            rest.strip_prefix(':')
                .ok_or_else(|| format!("expected : after ] in {s:?}"))?,
        )
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0]), &spec[parts[0].len() + 1..]),
            _ => return Err(format!("cannot read port {s:?}")),
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((h, t)) => (Some(h), t),
        None => (None, rest),
    };
    port_mappings(ip, published, target, proto)
}

/// A short volume entry: `SOURCE:TARGET[:MODE]` or `TARGET`.
#[derive(Debug, PartialEq)]
pub(crate) struct ShortVolume<'a> {
    pub source: Option<&'a str>,
    pub target: &'a str,
    pub read_only: bool,
    /// Modes other than ro/rw (`z`, `Z`, `nocopy`, propagation), dropped.
    pub ignored: Vec<&'a str>,
}

pub(crate) fn short_volume(s: &str) -> Result<ShortVolume<'_>, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, modes) = match parts.as_slice() {
        [t] => (None, *t, ""),
        [src, t] => (Some(*src), *t, ""),
        [src, t, m] => (Some(*src), *t, *m),
        _ => return Err(format!("cannot read volume {s:?}")),
    };
    if target.is_empty() {
        return Err(format!("volume {s:?} has no target path"));
    }
    let mut read_only = false;
    let mut ignored = Vec::new();
    for m in modes.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" => {}
            other => ignored.push(other),
        }
    }
    Ok(ShortVolume {
        source: source.filter(|s| !s.is_empty()),
        target,
        read_only,
        ignored,
    })
}

/// Whether a volume source is a host path (a bind mount) rather than a volume name.
pub(crate) fn is_host_path(source: &str) -> bool {
    source.starts_with('/') || source.starts_with('.') || source.starts_with('~')
}

/// A Go duration (`1m30s`, `500ms`, `1.5h`) in whole seconds, rounded up; also whether the
/// rounding changed it.
pub(crate) fn go_duration(s: &str) -> Result<(u64, bool), String> {
    let bad = || format!("expected a duration such as \"30s\" or \"1m30s\", found {s:?}");
    if s == "0" {
        return Ok((0, false));
    }
    let mut nanos: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        let after = &rest[n..];
        let u = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let scale = match &after[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += value * scale;
        rest = &after[u..];
    }
    let secs = (nanos / 1e9).ceil();
    if secs > 1e12 {
        return Err(format!("{s:?} is too long"));
    }
    let whole = secs as u64;
    Ok((whole, (whole as f64) * 1e9 != nanos))
}

/// Seconds as a warren duration: `90` is `"1m30s"`.
pub(crate) fn warren_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A Docker size (`512m`, `1gb`, `2G`, `1048576`): units are binary, `b`, `k`, `m`, `g`
/// with an optional `b`.
pub(crate) fn docker_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let n = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(n);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a size such as \"512m\" or \"1g\", found {s:?}"))?;
    let scale: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown unit {other:?} in {s:?}")),
    };
    Ok((value * scale as f64) as u64)
}

/// Bytes as a warren size: the largest binary unit that divides them.
pub(crate) fn warren_size(bytes: u64) -> String {
    for (unit, scale) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(s: &str) -> Vec<String> {
        short_port(s).unwrap().iter().map(port_text).collect()
    }

    #[test]
    fn port_forms() {
        assert_eq!(ports("8080:80"), ["8080:80"]);
        assert_eq!(ports("127.0.0.1:8080:80"), ["127.0.0.1:8080:80"]);
        assert_eq!(ports("53:53/udp"), ["53:53/udp"]);
        assert_eq!(ports("[::1]:6001:6001"), ["[::1]:6001:6001"]);
        assert_eq!(ports("9090-9091:8080-8081"), ["9090:8080", "9091:8081"]);
        assert!(short_port("80").unwrap_err().contains("no host port"));
        assert!(short_port("127.0.0.1::80")
            .unwrap_err()
            .contains("no host port"));
        assert!(short_port("8080-8082:80-81")
            .unwrap_err()
            .contains("different lengths"));
        assert!(short_port("70000:80").unwrap_err().contains("not a port"));
        assert!(short_port("80:80/sctp").unwrap_err().contains("sctp"));
    }

    #[test]
    fn volume_forms() {
        let v = short_volume("db:/var/lib/mysql:ro").unwrap();
        assert_eq!(
            (v.source, v.target, v.read_only),
            (Some("db"), "/var/lib/mysql", true)
        );
        let v = short_volume("/data").unwrap();
        assert_eq!((v.source, v.target), (None, "/data"));
        let v = short_volume("./conf:/etc/app:z").unwrap();
        assert_eq!(v.ignored, ["z"]);
        assert!(is_host_path("./conf") && is_host_path("/srv") && is_host_path("~/x"));
        assert!(!is_host_path("dbdata"));
    }

    #[test]
    fn durations_sizes_and_commands() {
        assert_eq!(go_duration("1m30s").unwrap(), (90, false));
        assert_eq!(go_duration("500ms").unwrap(), (1, true));
        assert_eq!(go_duration("1.5h").unwrap(), (5400, false));
        assert!(go_duration("10").is_err());
        assert!(go_duration("5 s").is_err());
        assert_eq!(warren_duration(90), "1m30s");
        assert_eq!(warren_duration(3600), "1h");
        assert_eq!(docker_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(docker_bytes("1gb").unwrap(), 1 << 30);
        assert_eq!(docker_bytes("1.5G").unwrap(), 3 << 29);
        assert!(docker_bytes("12x").is_err());
        assert_eq!(warren_size(512 << 20), "512M");
        assert_eq!(warren_size(3 << 29), "1536M");
        assert_eq!(warren_size(1000), "1000");
        assert_eq!(
            shell_split(r#"sh -c 'echo "hi there"' "a\"b" c\ d"#).unwrap(),
            ["sh", "-c", "echo \"hi there\"", "a\"b", "c d"]
        );
        assert!(shell_split("echo 'open").is_err());
    }
}
