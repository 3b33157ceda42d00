//! Pure parsers of `btrfs qgroup show`, `btrfs filesystem du` and `btrfs property get` output.

/// One row of `btrfs qgroup show --raw -pcre`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qgroup {
    /// `<level>/<id>`, e.g. `0/256` (a subvolume) or `1/256` (a group).
    pub id: String,
    pub referenced: u64,
    pub exclusive: u64,
    pub max_referenced: Option<u64>,
    pub max_exclusive: Option<u64>,
    pub parents: Vec<String>,
    pub children: Vec<String>,
}

/// Splits `1/256` into (1, 256).
pub fn parse_qgroup_id(s: &str) -> Option<(u64, u64)> {
    let (level, id) = s.split_once('/')?;
    Some((level.parse().ok()?, id.parse().ok()?))
}

/// Parses `btrfs qgroup show --raw -pcre` (columns: qgroupid, referenced, exclusive, max
/// referenced, max exclusive, parents, children, then an optional path that may hold spaces).
/// Header, ruler and warning lines are skipped.
pub fn parse_qgroup_show(out: &str) -> std::result::Result<Vec<Qgroup>, String> {
    let mut groups = Vec::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = fields.first() else {
            continue;
        };
        if parse_qgroup_id(first).is_none() {
            continue; // header, ruler, WARNING
        }
        if fields.len() < 7 {
            return Err(format!(
                "unexpected line in `btrfs qgroup show --raw -pcre` output: {line:?}"
            ));
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number {s:?} in qgroup line {line:?}"))
        };
        let limit = |s: &str| match s {
            "none" | "-" => Ok(None),
            _ => num(s).map(Some),
        };
        let list = |s: &str| -> Vec<String> {
            if s == "-" {
                Vec::new()
            } else {
                s.split(',').map(str::to_string).collect()
            }
        };
        groups.push(Qgroup {
            id: first.to_string(),
            referenced: num(fields[1])?,
            exclusive: num(fields[2])?,
            max_referenced: limit(fields[3])?,
            max_exclusive: limit(fields[4])?,
            parents: list(fields[5]),
            children: list(fields[6]),
        });
    }
    Ok(groups)
}

/// Parses `btrfs filesystem du -s --raw PATH` into (total, exclusive) bytes.
pub fn parse_filesystem_du(out: &str) -> std::result::Result<(u64, u64), String> {
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 {
            if let (Ok(total), Ok(excl)) = (f[0].parse(), f[1].parse()) {
                return Ok((total, excl));
            }
        }
    }
    Err(format!(
        "unexpected output of `btrfs filesystem du -s --raw`: {out:?}"
    ))
}
/// Parses `btrfs filesystem usage -b PATH` into the pool's size and used bytes (its
/// "Device size" and "Used" lines of the overall section).
pub fn parse_filesystem_usage(out: &str) -> std::result::Result<crate::PoolUsage, String> {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (field("Device size:"), field("Used:")) {
        (Some(size), Some(used)) => Ok(crate::PoolUsage { size, used }),
        _ => Err(format!(
            "unexpected output of `btrfs filesystem usage -b`: {out:?}"
        )),
    }
}

/// Parses the `ro=true` / `ro=false` line that `btrfs property get -ts PATH` prints.
pub fn parse_ro_property(out: &str) -> Option<bool> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("ro="))
        .and_then(|v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
}
