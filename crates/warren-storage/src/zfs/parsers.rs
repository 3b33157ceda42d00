//! Pure parsers of `zfs list -Hp` and `zfs get -Hp` output, and the rules for dataset,
//! snapshot and pool names.

use super::*;

/// Splits `zfs list -H` / `zfs get -H` output into rows of exactly `columns` tab-separated
/// fields. Fields are not trimmed (mountpoints may contain spaces); `\r\n` endings are accepted.
pub fn parse_list(text: &str, columns: usize) -> Result<Vec<Vec<String>>, ParseError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
            if fields.len() == columns {
                Ok(fields)
            } else {
                Err(ParseError::Columns {
                    line: i + 1,
                    expected: columns,
                    found: fields.len(),
                    text: line.to_string(),
                })
            }
        })
        .collect()
}

/// One row of `zfs get -Hp -o name,property,value,source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyRow {
    pub name: String,
    pub property: String,
    /// `-` when the property does not apply.
    pub value: String,
    /// `local`, `default`, `inherited from <dataset>`, `received`, `temporary` or `-`.
    pub source: String,
}

/// Parses `zfs get -Hp -o name,property,value,source` output.
pub fn parse_get(text: &str) -> Result<Vec<PropertyRow>, ParseError> {
    Ok(parse_list(text, 4)?
        .into_iter()
        .map(|mut r| {
            let source = r.pop().unwrap_or_default();
            let value = r.pop().unwrap_or_default();
            let property = r.pop().unwrap_or_default();
            let name = r.pop().unwrap_or_default();
            PropertyRow {
                name,
                property,
                value,
                source,
            }
        })
        .collect())
}

/// Parses `zfs get -Hp -o property,value` output of one dataset into property → value.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    Ok(parse_list(text, 2)?
        .into_iter()
        .map(|mut r| {
            let value = r.pop().unwrap_or_default();
            (r.pop().unwrap_or_default(), value)
        })
        .collect())
}

/// The value `zfs get -Hp -o value PROP DS` printed: its one line, `None` for `-` or nothing.
pub fn parse_value(text: &str) -> Option<String> {
    let v = text.strip_suffix('\n').unwrap_or(text);
    let v = v.strip_suffix('\r').unwrap_or(v);
    (!v.is_empty() && v != "-").then(|| v.to_string())
}

/// A `-p` byte count; `-` (not applicable) and `none` are `None`.
pub fn parse_size(what: &str, value: &str) -> Result<Option<u64>, ParseError> {
    match value.trim() {
        "-" | "none" => Ok(None),
        v => v.parse().map(Some).map_err(|_| ParseError::Number {
            what: what.to_string(),
            value: value.to_string(),
        }),
    }
}

/// A quota as `zfs get -p` prints it: `0` (and `none`, `-`) mean no limit.
pub fn parse_quota(value: &str) -> Result<Option<u64>, ParseError> {
    Ok(parse_size("quota", value)?.filter(|&q| q != 0))
}

/// The `clones` property of a snapshot: comma-separated dataset names, empty or `-` for none.
pub fn parse_clones(value: &str) -> Vec<String> {
    parse_value(value)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `on`/`off` properties (`readonly`, `canmount`...).
pub fn parse_on_off(value: &str) -> bool {
    value.trim() == "on"
}

/// One row of `zfs list -Hp -t snapshot -o name,used,creation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZfsSnapshot {
    /// The dataset the snapshot belongs to (the part before `@`).
    pub dataset: String,
    pub label: String,
    /// Bytes held only by this snapshot.
    pub used: u64,
    /// Unix seconds.
    pub creation: u64,
}

/// Parses `zfs list -Hp -t snapshot -o name,used,creation` output, keeping its order.
pub fn parse_snapshot_list(text: &str) -> Result<Vec<ZfsSnapshot>, ParseError> {
    parse_list(text, 3)?
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let (dataset, label) =
                row[0]
                    .split_once('@')
                    .ok_or_else(|| ParseError::SnapshotName {
                        line: i + 1,
                        name: row[0].clone(),
                    })?;
            let number = |what: &str, v: &str| {
                parse_size(what, v)?.ok_or_else(|| ParseError::Number {
                    what: what.to_string(),
                    value: v.to_string(),
                })
            };
            Ok(ZfsSnapshot {
                dataset: dataset.to_string(),
                label: label.to_string(),
                used: number("used", &row[1])?,
                creation: number("creation", &row[2])?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// The characters OpenZFS accepts in a dataset or snapshot component.
fn zfs_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')
}

/// Refuses world, workload and volume names that are not one ZFS name component (or would
/// collide with the world metadata files next to the worlds).
pub fn check_component(kind: &'static str, name: &str) -> Result<(), ZfsError> {
    let bad = |reason| {
        Err(ZfsError::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if name.ends_with(".json") || name.ends_with(".sealed") {
        return bad("must not end with .json or .sealed");
    }
    if !name.chars().all(zfs_char) {
        return bad("zfs allows only letters, digits, space and - _ . :");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    Ok(())
}

/// Refuses labels that break the snapshot label rule
/// ([`warren_model::names::is_snapshot_label`]), which also keeps out what ZFS would reject or
/// read as a list (`,`) or range (`%`).
pub fn check_label(label: &str) -> Result<(), ZfsError> {
    if warren_model::names::is_snapshot_label(label) {
        return Ok(());
    }
    Err(ZfsError::InvalidName {
        kind: "snapshot",
        name: label.to_string(),
        reason: warren_model::names::SNAPSHOT_LABEL_RULE,
    })
}

pub(super) fn check_pool(pool: &str) -> Result<(), ZfsError> {
    let ok = !pool.is_empty()
        && pool.len() <= 200
        && pool
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && c.chars().all(zfs_char));
    if ok {
        Ok(())
    } else {
        Err(ZfsError::InvalidName {
            kind: "pool",
            name: pool.to_string(),
            reason: "expected a pool or dataset name like tank or tank/sub",
        })
    }
}

/// The snapshot label [`Storage::clone_dataset`] uses for `dst` when given none.
pub fn clone_snapshot_label(dst: &DatasetId) -> String {
    format!("{CLONE_SNAPSHOT_PREFIX}{}", dst.key().replace('/', "-"))
}
