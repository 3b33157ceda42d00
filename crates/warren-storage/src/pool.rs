//! The embedded default pool: choosing and preparing the dataset driver for a state dir.
//!
//! [`open_storage`] decides, in this order:
//! 1. [`Driver::Dir`] → [`DirStorage`] at `<state>/datasets`; [`Driver::Zfs`] → the ZFS
//!    driver on [`PoolOptions::zfs_pool`], mounted under `<state>/zfs`;
//! 2. the state dir is itself on btrfs (statfs magic) → [`BtrfsStorage`] at `<state>/datasets`;
//! 3. otherwise ([`Driver::Auto`] or [`Driver::Btrfs`]) a loop-backed pool: a sparse
//!    `<state>/pool.img` of [`PoolOptions::image_size`] bytes, formatted with `mkfs.btrfs -q`
//!    only when warren has just created it (an existing image that does not hold btrfs is
//!    refused, never reformatted), mounted with `mount -o loop` (autoclear loop device) at
//!    `<state>/pool` unless already mounted there, and used as the [`BtrfsStorage`] root.
//!
//! `Auto` never silently degrades to copies: where btrfs cannot be set up it fails with the
//! reason, and the operator may choose `Dir` explicitly.
//!
//! On FreeBSD `Auto` means [`Driver::Zfs`] ([`Driver::resolve`]): datasets live under
//! `<zfs_pool>/warren` (the pool defaults to `zroot`, the installer's), and a pool that does
//! not exist stops the daemon at start with the flag to name another.
//!
//! The pool stays mounted when the daemon exits (workloads keep running on it);
//! [`close_pool`] unmounts it explicitly. This module also owns the `/proc/self/mountinfo`
//! parser ([`parse_mountinfo`]) and [`mounts_under`], used to check that nothing is left
//! mounted.
//!
//! Portability: steps 2 and 3 (statfs magic, loop devices, `mount -o loop`, `losetup`) exist
//! only on Linux. On other systems `Auto` and `Btrfs` fail with [`StorageError::Unsupported`],
//! [`is_btrfs`] is always false and [`close_pool`] has nothing to do. [`mounts_under`] reads
//! `/proc/self/mountinfo` on Linux and `getfsstat(2)` on FreeBSD. The parsers are portable.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(target_os = "linux")]
use warren_exec::Cmd;
use warren_exec::Executor;

#[cfg(target_os = "linux")]
use crate::btrfs::BtrfsStorage;
use crate::dir::DirStorage;
#[cfg(target_os = "linux")]
use crate::fsutil::exists;
use crate::fsutil::{create_dir_all, io_err};
use crate::{Result, Storage, StorageError};

/// Which dataset driver to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// btrfs: the state dir's own filesystem if it is btrfs, else a loop-backed pool file.
    #[default]
    Auto,
    /// Same as `Auto`; spelled out by operators who want to say so.
    Btrfs,
    /// Plain directories (rootfs by copying).
    Dir,
    /// ZFS datasets under `<zfs_pool>/warren`, mounted under `<state>/zfs`.
    Zfs,
}

impl Driver {
    /// The driver `self` stands for on `os` (`std::env::consts::OS`): `Auto` is ZFS on FreeBSD
    /// and btrfs elsewhere; every other choice is itself.
    pub fn resolve(self, os: &str) -> Driver {
        match self {
            Driver::Auto if os == "freebsd" => Driver::Zfs,
            other => other,
        }
    }
}

/// How to open the storage of a state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    pub driver: Driver,
    /// Apparent size of a newly created `pool.img` (sparse: only written blocks use disk).
    pub image_size: u64,
    /// The zpool (or parent dataset) the ZFS driver uses.
    pub zfs_pool: String,
}

/// 20 GiB.
pub const DEFAULT_IMAGE_SIZE: u64 = 20 << 30;

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            driver: Driver::Auto,
            image_size: DEFAULT_IMAGE_SIZE,
            zfs_pool: "zroot".to_string(),
        }
    }
}

/// `<state>/pool.img`.
pub fn pool_image(state_dir: &Path) -> PathBuf {
    state_dir.join("pool.img")
}

/// `<state>/pool`, where the pool image is mounted.
pub fn pool_mountpoint(state_dir: &Path) -> PathBuf {
    state_dir.join("pool")
}

/// Opens (preparing if needed) the dataset storage of `state_dir`; see the module docs.
pub fn open_storage(
    state_dir: &Path,
    opts: &PoolOptions,
    exec: Arc<dyn Executor>,
) -> Result<Arc<dyn Storage>> {
    open_storage_on(state_dir, opts, exec, std::env::consts::OS)
}

/// [`open_storage`] as it behaves on `os`.
fn open_storage_on(
    state_dir: &Path,
    opts: &PoolOptions,
    exec: Arc<dyn Executor>,
    os: &str,
) -> Result<Arc<dyn Storage>> {
    create_dir_all(state_dir)?;
    let datasets = state_dir.join("datasets");
    let driver = opts.driver.resolve(os);
    if driver == Driver::Dir {
        create_dir_all(&datasets)?;
        return Ok(Arc::new(DirStorage::new(datasets, exec)));
    }
    if driver == Driver::Zfs {
        let root = state_dir.join("zfs");
        create_dir_all(&root)?;
        return match crate::zfs::ZfsStorage::open(&opts.zfs_pool, root, exec) {
            Ok(s) => Ok(Arc::new(s)),
            // The operator chose nothing: say what the default is and how to choose.
            Err(e) if opts.driver == Driver::Auto => Err(StorageError::Other(format!(
                "{e}; on {os} warren keeps its datasets on ZFS by default: name an existing \
                 pool with --zfs-pool POOL (or WARREN_ZFS_POOL), or choose --storage dir"
            ))),
            Err(e) => Err(e),
        };
    }
    open_btrfs(state_dir, &datasets, opts, exec)
}

/// Steps 2 and 3 of [`open_storage`].
#[cfg(target_os = "linux")]
fn open_btrfs(
    state_dir: &Path,
    datasets: &Path,
    opts: &PoolOptions,
    exec: Arc<dyn Executor>,
) -> Result<Arc<dyn Storage>> {
    if is_btrfs(state_dir)? {
        create_dir_all(datasets)?;
        return Ok(Arc::new(BtrfsStorage::new(datasets.to_path_buf(), exec)));
    }
    let root = ensure_pool(state_dir, opts.image_size, exec.as_ref())?;
    Ok(Arc::new(BtrfsStorage::new(root, exec)))
}

/// Off Linux there is no btrfs and no loop-backed pool: only the dir driver.
#[cfg(not(target_os = "linux"))]
fn open_btrfs(
    _state_dir: &Path,
    _datasets: &Path,
    opts: &PoolOptions,
    _exec: Arc<dyn Executor>,
) -> Result<Arc<dyn Storage>> {
    let asked = match opts.driver {
        Driver::Btrfs => "the btrfs storage driver",
        _ => "the automatic storage driver (btrfs)",
    };
    Err(StorageError::Unsupported(format!(
        "{asked} needs Linux and this host runs {}; choose the dir driver",
        std::env::consts::OS
    )))
}

/// Unmounts `<state>/pool` if mounted and waits until no loop device holds `pool.img`.
/// Fails (and leaves the pool mounted) if the pool is busy.
#[cfg(target_os = "linux")]
pub fn close_pool(state_dir: &Path, exec: Arc<dyn Executor>) -> Result<()> {
    let mnt = pool_mountpoint(state_dir);
    while mount_at(&mnt)?.is_some() {
        exec.run(&Cmd::new("umount").arg(&mnt))?;
    }
    let img = pool_image(state_dir);
    if exists(&img) {
        release_loop_devices(&img, exec.as_ref())?;
    }
    Ok(())
}

/// Off Linux [`open_storage`] never creates a pool, so there is nothing to unmount.
#[cfg(not(target_os = "linux"))]
pub fn close_pool(_state_dir: &Path, _exec: Arc<dyn Executor>) -> Result<()> {
    Ok(())
}

/// Mounts the pool image (creating and formatting it first if it does not exist) and returns
/// the mountpoint.
#[cfg(target_os = "linux")]
fn ensure_pool(state_dir: &Path, image_size: u64, exec: &dyn Executor) -> Result<PathBuf> {
    let img = pool_image(state_dir);
    let mnt = pool_mountpoint(state_dir);
    if let Some(fs_type) = mount_at(&mnt)? {
        return match fs_type.as_str() {
            "btrfs" => Ok(mnt),
            other => Err(StorageError::Other(format!(
                "{} is mounted but holds {other}, not the btrfs pool",
                mnt.display()
            ))),
        };
    }
    if !exists(&img) {
        create_image(&img, image_size, exec)?;
    } else if !image_holds_btrfs(&img)? {
        return Err(StorageError::Other(format!(
            "{} exists but does not hold a btrfs filesystem; refusing to format or mount it \
             (move it away to let warren create a new pool)",
            img.display()
        )));
    }
    create_dir_all(&mnt)?;
    exec.run(&Cmd::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt))?;
    Ok(mnt)
}

/// Creates a sparse image and formats it; removes it again if formatting fails.
#[cfg(target_os = "linux")]
fn create_image(img: &Path, size: u64, exec: &dyn Executor) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(img)
        .map_err(io_err(img))?;
    let sized = file.set_len(size).map_err(io_err(img));
    drop(file);
    let formatted = sized.and_then(|()| {
        exec.run(&Cmd::new("mkfs.btrfs").arg("-q").arg(img))?;
        Ok(())
    });
    if formatted.is_err() {
        let _ = std::fs::remove_file(img);
    }
    formatted
}

/// The btrfs superblock magic, at byte 0x10040 of the device.
const BTRFS_MAGIC: &[u8; 8] = b"_BHRfS_M";
const BTRFS_MAGIC_OFFSET: u64 = 0x10040;

/// True if `img` carries the btrfs superblock magic.
pub fn image_holds_btrfs(img: &Path) -> Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(img).map_err(io_err(img))?;
    f.seek(SeekFrom::Start(BTRFS_MAGIC_OFFSET))
        .map_err(io_err(img))?;
    let mut magic = [0u8; 8];
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == BTRFS_MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io_err(img)(e)),
    }
}

/// True if `path` is on a btrfs filesystem.
#[cfg(target_os = "linux")]
pub fn is_btrfs(path: &Path) -> Result<bool> {
    let st = nix::sys::statfs::statfs(path).map_err(|e| StorageError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(st.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
}

/// True if `path` is on a btrfs filesystem: never, off Linux.
#[cfg(not(target_os = "linux"))]
pub fn is_btrfs(_path: &Path) -> Result<bool> {
    Ok(false)
}

/// Waits for autoclear to detach every loop device backed by `img`; detaches stragglers.
#[cfg(target_os = "linux")]
fn release_loop_devices(img: &Path, exec: &dyn Executor) -> Result<()> {
    for _ in 0..50 {
        if loop_devices_of(img, exec)?.is_empty() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for dev in loop_devices_of(img, exec)? {
        exec.run(&Cmd::new("losetup").arg("-d").arg(&dev))?;
    }
    Ok(())
}

/// Loop devices backed by `file`, from `losetup -j FILE`.
#[cfg(target_os = "linux")]
pub fn loop_devices_of(file: &Path, exec: &dyn Executor) -> Result<Vec<String>> {
    let out = exec.run(&Cmd::new("losetup").arg("-j").arg(file))?;
    Ok(parse_losetup_j(&out.stdout_str()))
}

/// Parses `losetup -j` output (`/dev/loop3: []: (/path/pool.img)`) into device paths.
pub fn parse_losetup_j(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once(':').map(|(dev, _)| dev.trim().to_string()))
        .filter(|d| d.starts_with("/dev/"))
        .collect()
}

/// The filesystem type mounted at exactly `mountpoint` (topmost mount), if any.
#[cfg(target_os = "linux")]
fn mount_at(mountpoint: &Path) -> Result<Option<String>> {
    let target = canonical(mountpoint);
    Ok(read_mountinfo()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == target)
        .map(|m| m.fs_type))
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor`.
    pub device: String,
    /// The path inside the filesystem that is mounted (bind mounts: a subdirectory).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub mount_options: String,
    pub fs_type: String,
    pub source: OsString,
    pub super_options: String,
}

/// Parses `/proc/self/mountinfo` text (see proc(5)); octal escapes (`\040` for a space, `\011`,
/// `\012`, `\134`) in paths are decoded.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            parse_mountinfo_line(l)
                .ok_or_else(|| StorageError::Other(format!("malformed mountinfo line {l:?}")))
        })
        .collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    Some(MountEntry {
        mount_id: fields[0].parse().ok()?,
        parent_id: fields[1].parse().ok()?,
        device: fields[2].to_string(),
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        mount_options: fields[5].to_string(),
        fs_type: fields[sep + 1].to_string(),
        source: unescape(fields[sep + 2]),
        super_options: fields.get(sep + 3).unwrap_or(&"").to_string(),
    })
}

/// Decodes the kernel's `\ooo` octal escapes.
fn unescape(field: &str) -> OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// This process's mount table.
#[cfg(target_os = "linux")]
pub fn read_mountinfo() -> Result<Vec<MountEntry>> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_mountinfo(&text)
}

/// Mount points at or below `path` in `entries`, in mount order.
pub fn mounts_under_in(entries: &[MountEntry], path: &Path) -> Vec<PathBuf> {
    entries
        .iter()
        .filter(|m| m.mount_point.starts_with(path))
        .map(|m| m.mount_point.clone())
        .collect()
}

pub(crate) fn try_mounts_under(path: &Path) -> Result<Vec<PathBuf>> {
    let path = canonical(path);
    Ok(mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(&path))
        .collect())
}

/// Every mount point of this process, in mount order.
#[cfg(target_os = "linux")]
fn mount_points() -> Result<Vec<PathBuf>> {
    Ok(read_mountinfo()?
        .into_iter()
        .map(|m| m.mount_point)
        .collect())
}

/// Every mounted filesystem's mount point, in mount order, from `getfsstat(2)` (into a buffer
/// of our own: `getmntinfo(3)` shares a static one between threads).
#[cfg(target_os = "freebsd")]
fn mount_points() -> Result<Vec<PathBuf>> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let failed = || {
        StorageError::Other(format!(
            "cannot list mounts (getfsstat): {}",
            std::io::Error::last_os_error()
        ))
    };
    loop {
        // SAFETY: a null buffer only asks for the number of mounted filesystems.
        let count = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
        let count = usize::try_from(count).map_err(|_| failed())?;
        // Room for filesystems mounted between the two calls.
        let cap = count + 8;
        let mut buf: Vec<libc::statfs> = Vec::with_capacity(cap);
        let bytes = libc::c_long::try_from(cap * std::mem::size_of::<libc::statfs>())
            .map_err(|_| failed())?;
        // SAFETY: `buf` has room for `cap` entries, which is `bytes` bytes.
        let got = unsafe { libc::getfsstat(buf.as_mut_ptr(), bytes, libc::MNT_NOWAIT) };
        let got = usize::try_from(got).map_err(|_| failed())?;
        if got >= cap {
            continue; // the table may have been cut short: ask again
        }
        // SAFETY: getfsstat initialised the first `got` entries.
        unsafe { buf.set_len(got) };
        return Ok(buf
            .iter()
            .map(|st| {
                let name: Vec<u8> = st
                    .f_mntonname
                    .iter()
                    .map(|&c| c as u8)
                    .take_while(|&c| c != 0)
                    .collect();
                PathBuf::from(OsStr::from_bytes(&name))
            })
            .collect());
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn mount_points() -> Result<Vec<PathBuf>> {
    Err(StorageError::Unsupported(format!(
        "listing mounts is not implemented on {}",
        std::env::consts::OS
    )))
}

/// Every mount point at or below `path` (symlinks in `path` resolved), in mount order.
///
/// # Panics
/// If the mount table (Linux: `/proc/self/mountinfo`) cannot be read or parsed, or this OS has
/// no way to list it here: an empty answer would wrongly claim
/// that nothing is mounted.
pub fn mounts_under(path: &Path) -> Vec<PathBuf> {
    try_mounts_under(path).unwrap_or_else(|e| panic!("cannot list mounts: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:7 master:1 - cgroup2 cgroup2 rw
90 27 0:55 / /var/lib/warren/pool rw,relatime shared:40 - btrfs /dev/loop0 rw,space_cache=v2,subvolid=5,subvol=/
91 90 0:55 /worlds/host /var/lib/warren/pool/work\\040dir rw - btrfs /dev/loop0 rw
92 27 0:60 / /mnt/tab\\011and\\012nl\\134 rw - tmpfs my\\040src rw
";

    #[test]
    fn parses_fields_and_optional_tags() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].fs_type, "proc");
        assert_eq!(m[2].mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m[2].fs_type, "cgroup2");
        assert_eq!(m[3].mount_id, 90);
        assert_eq!(m[3].parent_id, 27);
        assert_eq!(m[3].device, "0:55");
        assert_eq!(m[3].source, OsString::from("/dev/loop0"));
        assert_eq!(m[3].super_options, "rw,space_cache=v2,subvolid=5,subvol=/");
    }

    #[test]
    fn decodes_octal_escapes() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m[4].root, Path::new("/worlds/host"));
        assert_eq!(m[4].mount_point, Path::new("/var/lib/warren/pool/work dir"));
        assert_eq!(m[5].mount_point, Path::new("/mnt/tab\tand\nnl\\"));
        assert_eq!(m[5].source, OsString::from("my src"));
        assert_eq!(unescape("a\\04"), OsString::from("a\\04"));
        assert_eq!(unescape("\\999"), OsString::from("\\999"));
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse_mountinfo("22 27 0:21 / /proc rw proc proc rw\n").is_err());
        assert!(parse_mountinfo("x 27 0:21 / /proc rw - proc proc rw\n").is_err());
        assert!(parse_mountinfo("\n").unwrap().is_empty());
    }

    #[test]
    fn mounts_under_matches_whole_components() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(
            mounts_under_in(&m, Path::new("/var/lib/warren/pool")),
            vec![
                PathBuf::from("/var/lib/warren/pool"),
                PathBuf::from("/var/lib/warren/pool/work dir")
            ]
        );
        assert!(mounts_under_in(&m, Path::new("/var/lib/warren/po")).is_empty());
        assert_eq!(mounts_under_in(&m, Path::new("/")).len(), 6);
    }

    #[test]
    fn root_is_mounted() {
        assert!(mounts_under(Path::new("/")).contains(&PathBuf::from("/")));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn real_mountinfo_has_root() {
        assert!(read_mountinfo()
            .unwrap()
            .iter()
            .any(|m| m.mount_point == Path::new("/")));
    }

    #[test]
    fn losetup_output() {
        assert_eq!(
            parse_losetup_j(
                "/dev/loop3: []: (/s/pool.img)\n/dev/loop12: [2049]:77 (/s/pool.img)\n"
            ),
            vec!["/dev/loop3".to_string(), "/dev/loop12".to_string()]
        );
        assert!(parse_losetup_j("").is_empty());
    }

    #[test]
    fn auto_is_zfs_on_freebsd_only() {
        assert_eq!(Driver::Auto.resolve("freebsd"), Driver::Zfs);
        assert_eq!(Driver::Auto.resolve("linux"), Driver::Auto);
        for d in [Driver::Btrfs, Driver::Dir, Driver::Zfs] {
            assert_eq!(d.resolve("freebsd"), d);
            assert_eq!(d.resolve("linux"), d);
        }
    }

    /// The FreeBSD default opens `<pool>/warren` through zfs, and a missing pool is a start-up
    /// error naming the flag; an explicit `--storage zfs` keeps the plain message.
    #[test]
    fn freebsd_default_storage_is_zfs_and_a_missing_pool_says_how_to_choose() {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let opts = PoolOptions {
            zfs_pool: "zroot".into(),
            ..PoolOptions::default()
        };
        rec.expect_err(
            "zfs list -Hp -o name zroot",
            "cannot open 'zroot': dataset does not exist\n",
        );
        let err = open_storage_on(t.path(), &opts, rec.clone(), "freebsd")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"zroot\" does not exist"), "{err}");
        assert!(
            err.contains("--zfs-pool POOL") && err.contains("--storage dir"),
            "{err}"
        );
        rec.finish();

        let root = t.path().join("zfs");
        let r = root.display();
        rec.expect_ok("zfs list -Hp -o name zroot", "zroot\n")
            .expect_ok(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 zroot/warren",
            &format!(
                "zroot/warren\tmountpoint\t{r}\tlocal\n\
                 zroot/warren/volumes\tmountpoint\t{r}/volumes\tlocal\n\
                 zroot/warren/workloads\tmountpoint\t{r}/workloads\tlocal\n\
                 zroot/warren/worlds\tmountpoint\t{r}/worlds\tlocal\n"
            ),
        );
        let s = open_storage_on(t.path(), &opts, rec.clone(), "freebsd").unwrap();
        assert_eq!(s.driver(), "zfs");
        rec.finish();

        let explicit = PoolOptions {
            driver: Driver::Zfs,
            zfs_pool: "tank".into(),
            ..PoolOptions::default()
        };
        rec.expect_err(
            "zfs list -Hp -o name tank",
            "cannot open 'tank': dataset does not exist\n",
        );
        let err = open_storage_on(t.path(), &explicit, rec.clone(), "linux")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("by default"), "{err}");
        rec.finish();
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn btrfs_is_refused_off_linux_before_any_command() {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        for driver in [Driver::Auto, Driver::Btrfs] {
            let opts = PoolOptions {
                driver,
                ..PoolOptions::default()
            };
            match open_storage_on(t.path(), &opts, rec.clone(), "netbsd") {
                Err(StorageError::Unsupported(msg)) => assert!(msg.contains("dir driver"), "{msg}"),
                Err(e) => panic!("{driver:?}: unexpected error {e}"),
                Ok(_) => panic!("{driver:?}: btrfs storage opened off Linux"),
            }
        }
        assert!(rec.ran().is_empty());
        let opts = PoolOptions {
            driver: Driver::Dir,
            ..PoolOptions::default()
        };
        let storage = open_storage(t.path(), &opts, rec.clone()).unwrap();
        assert_eq!(storage.driver(), "dir");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn non_btrfs_image_is_refused_before_any_command() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(pool_image(t.path()), vec![0u8; 0x20000]).unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        assert!(
            !is_btrfs(t.path()).unwrap(),
            "this test needs a temp dir that is not on btrfs (set TMPDIR)"
        );
        let opts = PoolOptions::default();
        let err = match open_storage(t.path(), &opts, rec.clone()) {
            Ok(_) => panic!("a zero-filled pool.img was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("does not hold a btrfs filesystem"), "{err}");
        assert!(rec.ran().is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn failed_mkfs_removes_the_new_image() {
        let t = tempfile::tempdir().unwrap();
        let img = pool_image(t.path());
        let rec = RecordingExecutor::new();
        rec.expect_err(&format!("mkfs.btrfs -q {}", img.display()), "too small");
        let err = ensure_pool(t.path(), 1 << 20, &rec)
            .unwrap_err()
            .to_string();
        assert!(err.contains("too small"), "{err}");
        assert!(!img.exists());
        rec.finish();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn new_image_is_sparse_formatted_and_mounted() {
        let t = tempfile::tempdir().unwrap();
        let img = pool_image(t.path());
        let mnt = pool_mountpoint(t.path());
        let rec = RecordingExecutor::new();
        rec.expect_ok(&format!("mkfs.btrfs -q {}", img.display()), "")
            .expect_ok(
                &format!("mount -o loop {} {}", img.display(), mnt.display()),
                "",
            );
        assert_eq!(ensure_pool(t.path(), 1 << 30, &rec).unwrap(), mnt);
        rec.finish();
        let meta = std::fs::metadata(&img).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 1 << 20, "image is not sparse");
    }
}
