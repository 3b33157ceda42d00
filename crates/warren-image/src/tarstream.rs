//! A bounded tar walker.
//!
//! The `tar` crate is used in raw mode: it only splits the stream into headers and data by the
//! header's size field. Long names (GNU `L`/`K`) and PAX headers (`x`, `g`) are read here, each
//! with a size cap, so a hostile archive cannot make us buffer a gigabyte-long "file name".
//! Everything that could make two parsers disagree about where the next header starts is
//! refused: a PAX `size` record that differs from the header and GNU sparse entries (whose
//! extension headers raw mode would misread as data).

use std::io::{self, Read};

use tar::EntryType;

use crate::error::EntryProblem;
use crate::Limits;

/// One logical tar entry, with long names and PAX records applied.
#[derive(Debug, Clone)]
pub(crate) struct EntryMeta {
    /// The entry's name, raw bytes.
    pub path: Vec<u8>,
    /// Link target (symlinks and hard links).
    pub link: Option<Vec<u8>>,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Data bytes following the header.
    pub size: u64,
    /// Extended attributes from `SCHILY.xattr.*` records.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Position of the data in the (uncompressed) stream.
    pub data_offset: u64,
}

impl EntryMeta {
    /// The entry name for messages.
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// What stopped a walk.
#[derive(Debug)]
pub(crate) enum WalkError<E> {
    /// The tar stream (or the reader under it) failed: corrupt, truncated, or a limit reader's
    /// error.
    Tar(io::Error),
    /// An entry's metadata was refused.
    Entry {
        entry: String,
        problem: EntryProblem,
    },
    /// More headers than `max_entries`.
    TooManyEntries(u64),
    /// The callback's error.
    Callback(E),
}

#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    size: Option<u64>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses PAX records (`<len> <key>=<value>\n`, where `len` counts the whole record). Values may
/// hold any byte, newlines included (binary xattrs), so records are split by length.
fn parse_pax(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    while !data.is_empty() {
        // Trailing NUL padding is tolerated (some writers pad the header data).
        if data.iter().all(|b| *b == 0) {
            break;
        }
        let sp = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or("record without a length")?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("bad record length")?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("record length does not match".into());
        }
        let record = &data[sp + 1..len - 1];
        data = &data[len..];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or("record without `=`")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let text = || {
            std::str::from_utf8(value)
                .map_err(|_| format!("{} is not UTF-8", String::from_utf8_lossy(key)))
        };
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{}={v} is not a number", String::from_utf8_lossy(key)))
        };
        match key {
            b"path" => pax.path = Some(value.to_vec()),
            b"linkpath" => pax.linkpath = Some(value.to_vec()),
            b"uid" => pax.uid = Some(number(text()?)?),
            b"gid" => pax.gid = Some(number(text()?)?),
            b"size" => pax.size = Some(number(text()?)?),
            b"mtime" => pax.mtime = Some(parse_pax_time(text()?).ok_or("bad mtime")?),
            _ if key.starts_with(b"SCHILY.xattr.") => pax
                .xattrs
                .push((key[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec())),
            _ if key.starts_with(b"GNU.sparse.") => {
                return Err("GNU sparse files are not supported".into())
            }
            // atime, ctime, uname, gname, comment, charset, LIBARCHIVE.*, ...: not needed.
            _ => {}
        }
    }
    Ok(pax)
}

/// `1700000000.123456789` or `-5.5` to (seconds, nanoseconds), floor semantics.
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    if neg {
        if nanos == 0 {
            Some((-secs, 0))
        } else {
            Some((-secs - 1, 1_000_000_000 - nanos))
        }
    } else {
        Some((secs, nanos))
    }
}

fn read_capped<E>(
    data: &mut dyn Read,
    size: u64,
    cap: u64,
    what: &'static str,
    entry: &str,
) -> Result<Vec<u8>, WalkError<E>> {
    if size > cap {
        return Err(WalkError::Entry {
            entry: entry.to_string(),
            problem: EntryProblem::MetadataTooLarge {
                what,
                len: size,
                limit: cap,
            },
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    data.take(cap)
        .read_to_end(&mut buf)
        .map_err(WalkError::Tar)?;
    Ok(buf)
}

/// An empty numeric field (all NULs or spaces), which some writers leave: read as 0, as Go's
/// archive/tar does.
fn blank(field: &[u8]) -> bool {
    field.iter().all(|b| *b == 0 || *b == b' ')
}

fn strip_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Walks the tar stream in `reader`, calling `f` for every logical entry with its metadata and
/// a reader over its data. Returns the reader positioned after the end-of-archive block (the
/// caller drains the rest, for hashing).
pub(crate) fn walk<R, E, F>(reader: R, limits: &Limits, mut f: F) -> Result<R, WalkError<E>>
where
    R: Read,
    F: FnMut(EntryMeta, &mut dyn Read) -> Result<(), E>,
{
    let mut archive = tar::Archive::new(reader);
    {
        let entries = archive.entries().map_err(WalkError::Tar)?.raw(true);
        let mut headers: u64 = 0;
        let mut longname: Option<Vec<u8>> = None;
        let mut longlink: Option<Vec<u8>> = None;
        let mut pax: Option<Pax> = None;
        let path_cap = limits.max_path_len as u64 + 1;
        for entry in entries {
            let mut entry = entry.map_err(WalkError::Tar)?;
            headers += 1;
            if headers > limits.max_entries {
                return Err(WalkError::TooManyEntries(headers));
            }
            let header = entry.header().clone();
            let header_path = header.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&header_path).into_owned();
            let size = header.entry_size().map_err(WalkError::Tar)?;
            let kind = header.entry_type();
            match kind {
                EntryType::GNULongName => {
                    let v = read_capped(&mut entry, size, path_cap, "GNU long name", &shown)?;
                    longname = Some(strip_nuls(v));
                    continue;
                }
                EntryType::GNULongLink => {
                    let v = read_capped(&mut entry, size, path_cap, "GNU long link", &shown)?;
                    longlink = Some(strip_nuls(v));
                    continue;
                }
                EntryType::XHeader => {
                    let v = read_capped(
                        &mut entry,
                        size,
                        Limits::MAX_PAX_BYTES,
                        "PAX header",
                        &shown,
                    )?;
                    let parsed = parse_pax(&v).map_err(|m| WalkError::Entry {
                        entry: shown.clone(),
                        problem: EntryProblem::Pax(m),
                    })?;
                    pax = Some(parsed);
                    continue;
                }
                EntryType::XGlobalHeader => {
                    // Global records apply to the whole archive; none that we honour matter.
                    read_capped(
                        &mut entry,
                        size,
                        Limits::MAX_PAX_BYTES,
                        "PAX global header",
                        &shown,
                    )?;
                    continue;
                }
                _ => {}
            }
            let pax_now = pax.take().unwrap_or_default();
            let path = pax_now
                .path
                .or(longname.take())
                .unwrap_or_else(|| header_path.clone());
            let shown = String::from_utf8_lossy(&path).into_owned();
            let link = pax_now
                .linkpath
                .or(longlink.take())
                .or_else(|| header.link_name_bytes().map(|c| c.into_owned()));
            if kind == EntryType::GNUSparse {
                return Err(WalkError::Entry {
                    entry: shown,
                    problem: EntryProblem::UnsupportedType("GNU sparse".into()),
                });
            }
            if let Some(pax_size) = pax_now.size {
                if pax_size != size {
                    return Err(WalkError::Entry {
                        entry: shown,
                        problem: EntryProblem::Pax(format!(
                            "size record {pax_size} differs from the header's {size}"
                        )),
                    });
                }
            }
            let bad = |source: io::Error| WalkError::Entry {
                entry: shown.clone(),
                problem: EntryProblem::io("header", source),
            };
            let old = header.as_old();
            let mode = if blank(&old.mode) {
                0
            } else {
                header.mode().map_err(bad)?
            };
            let uid = match pax_now.uid {
                Some(u) => u,
                None if blank(&old.uid) => 0,
                None => header.uid().map_err(bad)?,
            };
            let gid = match pax_now.gid {
                Some(g) => g,
                None if blank(&old.gid) => 0,
                None => header.gid().map_err(bad)?,
            };
            let mtime = match pax_now.mtime {
                Some(t) => t,
                None if blank(&old.mtime) => (0, 0),
                None => (
                    i64::try_from(header.mtime().map_err(bad)?).unwrap_or(i64::MAX),
                    0,
                ),
            };
            let meta = EntryMeta {
                path,
                link,
                kind,
                mode,
                uid,
                gid,
                mtime,
                size,
                xattrs: pax_now.xattrs,
                data_offset: entry.raw_file_position(),
            };
            f(meta, &mut entry).map_err(WalkError::Callback)?;
        }
        if longname.is_some() || longlink.is_some() || pax.is_some() {
            return Err(WalkError::Tar(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends after a long-name or PAX header without the entry it describes",
            )));
        }
    }
    Ok(archive.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &[u8]) -> Vec<u8> {
        let body_len = key.len() + 1 + value.len() + 1;
        let mut len = body_len + 1;
        loop {
            let total = len.to_string().len() + 1 + body_len;
            if total == len {
                break;
            }
            len = total;
        }
        let mut v = format!("{len} {key}=").into_bytes();
        v.extend_from_slice(value);
        v.push(b'\n');
        v
    }

    #[test]
    fn pax_records_with_binary_values() {
        let mut data = record("path", b"a/very/long/name");
        data.extend(record(
            "SCHILY.xattr.security.capability",
            b"\x01\n\x00\x02",
        ));
        data.extend(record("mtime", b"1700000000.5"));
        data.extend(record("uid", b"1000"));
        let pax = parse_pax(&data).unwrap();
        assert_eq!(pax.path.as_deref(), Some(&b"a/very/long/name"[..]));
        assert_eq!(
            pax.xattrs,
            vec![(b"security.capability".to_vec(), b"\x01\n\x00\x02".to_vec())]
        );
        assert_eq!(pax.mtime, Some((1_700_000_000, 500_000_000)));
        assert_eq!(pax.uid, Some(1000));
    }

    #[test]
    fn pax_refuses_malformed_and_sparse() {
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"garbage").is_err());
        assert!(parse_pax(&record("GNU.sparse.major", b"1")).is_err());
        assert!(parse_pax(&record("uid", b"-1")).is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("12.000000001"), Some((12, 1)));
        assert_eq!(parse_pax_time("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time("x"), None);
    }
}
