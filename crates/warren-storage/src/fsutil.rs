//! Small filesystem helpers shared by the drivers and the world builders: error context,
//! dataset-name checks, idempotent removal and a symlink-preserving tree copy.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Result, StorageError};

/// Maps an `io::Error` to [`StorageError::Io`] naming `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses names that are not a single, ordinary path component.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\0'])
        || name.ends_with(".json")
        || name.ends_with(".sealed");
    if bad {
        return Err(StorageError::Other(format!(
            "invalid {kind} name {name:?}: must be one path component, not starting with '.'"
        )));
    }
    Ok(())
}

/// True if anything (file, dir, dangling symlink) is at `path`.
pub(crate) fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(io_err(path))
}

/// Creates one directory with an explicit mode (not subject to the umask).
pub(crate) fn mkdir_mode(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Writes a small file with an explicit mode.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fs::write(path, contents).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Removes a file; absent is fine.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Removes a directory if it is empty; absent or non-empty is fine.
pub(crate) fn remove_dir_if_empty(path: &Path) -> Result<()> {
    match fs::remove_dir(path) {
        Err(e)
            if e.kind() != io::ErrorKind::NotFound
                && e.kind() != io::ErrorKind::DirectoryNotEmpty =>
        {
            Err(io_err(path)(e))
        }
        _ => Ok(()),
    }
}

/// Fails if any filesystem is mounted at or below `path`: removing such a tree would descend
/// into (and delete) whatever is mounted there.
pub(crate) fn refuse_if_mounted(path: &Path) -> Result<()> {
    let mounted = crate::pool::try_mounts_under(path)?;
    if mounted.is_empty() {
        return Ok(());
    }
    Err(StorageError::Other(format!(
        "refusing to remove {}: still mounted at {}",
        path.display(),
        mounted
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Sub-directories of `dir` (sorted names), skipping files; an absent `dir` yields nothing.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let is_dir = entry.file_type().map_err(io_err(&entry.path()))?.is_dir();
        if is_dir {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Copies a tree: directories and regular files with their mode and owner, symlinks as
/// symlinks (never followed). Entries for which `skip(relative path)` is true are left out.
pub(crate) fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
    copy_tree_at(src, dst, Path::new(""), skip)
}

fn copy_tree_at(src: &Path, dst: &Path, rel: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
    let meta = src.symlink_metadata().map_err(io_err(src))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(src).map_err(io_err(src))?;
        symlink(&target, dst).map_err(io_err(dst))?;
    } else if kind.is_dir() {
        fs::create_dir(dst).map_err(io_err(dst))?;
        for entry in fs::read_dir(src).map_err(io_err(src))? {
            let name = entry.map_err(io_err(src))?.file_name();
            let child_rel: PathBuf = rel.join(&name);
            if !skip(&child_rel) {
                copy_tree_at(&src.join(&name), &dst.join(&name), &child_rel, skip)?;
            }
        }
        fs::set_permissions(dst, meta.permissions()).map_err(io_err(dst))?;
    } else if kind.is_file() {
        fs::copy(src, dst).map_err(io_err(dst))?;
    } else {
        // Sockets, fifos and devices have no place in a world's /etc.
        return Ok(());
    }
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(io_err(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_one_plain_component() {
        for ok in ["host", "busybox", "web-1", "a_b"] {
            check_name("world", ok).unwrap();
        }
        for bad in [
            "", ".", "..", ".hidden", "a/b", "x.json", "x.sealed", "a\0b",
        ] {
            assert!(check_name("world", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn copy_tree_keeps_symlinks_and_modes_and_skips() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("sub/private")).unwrap();
        write_file(&src.join("sub/file"), b"x", 0o640).unwrap();
        write_file(&src.join("sub/private/key"), b"secret", 0o600).unwrap();
        symlink("/nonexistent/target", src.join("link")).unwrap();
        let dst = t.path().join("dst");
        copy_tree(&src, &dst, &|rel| rel == Path::new("sub/private")).unwrap();
        assert_eq!(fs::read(dst.join("sub/file")).unwrap(), b"x");
        let mode = fs::metadata(dst.join("sub/file"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("/nonexistent/target")
        );
        assert!(!exists(&dst.join("sub/private")));
    }
}
