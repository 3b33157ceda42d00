//! A writer of `newc` cpio archives, the format Linux unpacks as an initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`): per entry a 110-byte ASCII
//! header (`070701` and thirteen 8-digit hex fields), the NUL-terminated name padded to four
//! bytes, the data padded to four bytes; the archive ends with an entry named `TRAILER!!!`.
//! The kernel accepts the archive as is or compressed (gzip and others).
//!
//! Entries are directories, regular files, symlinks and device nodes, with fixed owner
//! (root) and time (0) so the same input gives the same bytes.

use crate::{invalid, Result};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being written.
#[derive(Debug, Default)]
pub struct Archive {
    buf: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    pub fn new() -> Self {
        Archive {
            buf: Vec::new(),
            next_ino: 1,
        }
    }

    /// A directory (its parents must be added first, as the kernel does not create them).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<&mut Self> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), b"")
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<&mut Self> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (`dev/console` is 5:1).
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<&mut Self> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), b"")
    }

    /// The archive's bytes, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1, (0, 0), 0);
        self.buf
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<&mut Self> {
        let ok = !path.is_empty()
            && !path.starts_with('/')
            && !path.contains('\0')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            return Err(invalid(
                "initramfs",
                format!("{path:?} is not a relative path without '.' or '..'"),
            ));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| invalid("initramfs", format!("{path}: larger than 4 GiB")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path, ino, mode, nlink, rdev, size);
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(self)
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), size: u32) {
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_one_file_and_the_trailer() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"hi\n").unwrap();
        let b = a.finish();
        // header (110) + "init\0" (5) = 115, padded to 116; data 3 padded to 4.
        assert_eq!(&b[..6], b"070701");
        assert_eq!(&b[6..14], b"00000001");
        assert_eq!(&b[14..22], b"000081ED");
        assert_eq!(&b[54..62], b"00000003");
        assert_eq!(&b[110..116], b"init\0\0");
        assert_eq!(&b[116..120], b"hi\n\0");
        assert_eq!(&b[120..126], b"070701");
        assert_eq!(&b[120 + 110..120 + 121], b"TRAILER!!!\0");
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut a = Archive::new();
        for p in ["", "/init", "a/../b", "a//b", "./x"] {
            assert_eq!(
                a.file(p, 0o644, b"").unwrap_err().field(),
                Some("initramfs")
            );
        }
    }
}
