//! The `[workload.NAME.vm]` table: how a `kind = "vm"` workload boots (a kernel for a
//! microVM, its own disk or an installer ISO for a full VM), and the checks of a VM against
//! the rest of its workload table (its kind, its source and the keys a VM has no use for).

use super::*;
use crate::spec::{VmFirmware, VmOptions, VM_MAX_CMDLINE};

/// The smallest `disk_size` a full VM's own disk may have.
const DISK_SIZE_MIN: u64 = 16 << 20;
use std::path::PathBuf;

/// What the workload's checks need to know of its `vm` table.
pub(super) struct VmTable {
    /// Offset of the `vm` key.
    pub(super) at: usize,
    /// The options, when every value was well-formed.
    pub(super) options: Option<VmOptions>,
    /// The first of `disk` and `iso` present, well-formed or not: the workload is a full VM.
    pub(super) full: Option<&'static str>,
}

impl Walker<'_> {
    /// The `vm` table: `kernel`, `initrd`, `disk` and `iso` (absolute paths without `..`),
    /// `cmdline` (one line of at most [`VM_MAX_CMDLINE`] bytes), `disk_size` (a size of at
    /// least 16M), `firmware` (`bios` | `uefi`) and `console` (a boolean). A full VM (`disk` or `iso`) takes no `kernel`, `initrd` or
    /// `cmdline`, and only a full VM takes `firmware = "uefi"`.
    pub(super) fn vm(&mut self, path: &Path, key: &Key<'_>, value: &Value<'_>) -> VmTable {
        let mut out = VmTable {
            at: key.span().start,
            options: None,
            full: None,
        };
        let example =
            r#"; e.g. [workload.NAME.vm] with disk = "/srv/vm/disk.qcow2", console = true"#;
        let Some(table) = self.table(path, value, example) else {
            return out;
        };
        let errors_before = self.diagnostics.len();
        let mut options = VmOptions::default();
        // (key offset, key) of the microVM keys and of the full-VM keys present.
        let mut microvm: Vec<(usize, &'static str)> = Vec::new();
        let mut full: Vec<(usize, &'static str)> = Vec::new();
        let mut uefi_at = None;
        let mut disk_size_at = None;
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let vpath = path.key(field);
            self.record(&vpath, k, v);
            let at = k.span().start;
            match field {
                "kernel" => {
                    microvm.push((at, "kernel"));
                    options.kernel = self.vm_path(&vpath, v);
                }
                "initrd" => {
                    microvm.push((at, "initrd"));
                    options.initrd = self.vm_path(&vpath, v);
                }
                "cmdline" => {
                    microvm.push((at, "cmdline"));
                    options.cmdline = self.checked_string(&vpath, v, check_cmdline);
                }
                "disk" => {
                    full.push((at, "disk"));
                    options.disk = self.vm_path(&vpath, v);
                }
                "iso" => {
                    full.push((at, "iso"));
                    options.iso = self.vm_path(&vpath, v);
                }
                "disk_size" => {
                    disk_size_at = Some(at);
                    options.disk_size = self.bytes(&vpath, v, DISK_SIZE_MIN);
                }
                "firmware" => {
                    if let Some(f) = self.one_of::<VmFirmware>(&vpath, v) {
                        options.firmware = f;
                        if f == VmFirmware::Uefi {
                            uefi_at = Some(v.span().start);
                        }
                    }
                }
                "console" => {
                    if let Some(b) = self.boolean(&vpath, v) {
                        options.console = b;
                    }
                }
                _ => self.unknown_key(k, &vpath, VM_KEYS),
            }
        }
        full.sort_unstable();
        microvm.sort_unstable();
        if let Some(&(_, boot)) = full.first() {
            for &(at, key) in &microvm {
                self.error(
                    at,
                    &path.key(key),
                    format!(
                        "`{key}` is for a microVM; a full VM boots its own `{boot}` through its \
                         firmware (remove `{key}`, or remove `disk` and `iso` to boot a kernel)"
                    ),
                );
            }
            out.full = Some(boot);
        } else if let Some(at) = disk_size_at {
            self.error(
                at,
                &path.key("disk_size"),
                "`disk_size` sizes a full VM's own disk (`disk` or `iso`); a microVM's disks are \
                 its root filesystem and its datasets",
            );
        }
        if let (true, Some(at)) = (full.is_empty(), uefi_at) {
            self.error(
                at,
                &path.key("firmware"),
                "firmware = \"uefi\" is for a full VM (`disk` or `iso`); a microVM boots its \
                 kernel directly",
            );
        }
        out.options = (self.diagnostics.len() == errors_before).then_some(options);
        out
    }

    /// A host file a VM boots from: an absolute path without `..` segments.
    fn vm_path(&mut self, path: &Path, value: &Value<'_>) -> Option<PathBuf> {
        self.checked_string(path, value, check_vm_file)
            .map(PathBuf::from)
    }

    /// The checks of a workload's `vm` table and kind against the rest of the workload:
    /// the table needs `kind = "vm"`; a full VM takes no `world`, `image` or `recipe` (each
    /// present one is reported at its key); `userns = true` and `readonly_rootfs = true`
    /// (their key offsets, when set) mean nothing on a vm. The `jail` table on a vm and a vm
    /// without any source are the workload's own checks.
    pub(super) fn vm_workload(
        &mut self,
        path: &Path,
        kind: Kind,
        vm: Option<&VmTable>,
        sources: &[(usize, &str, Option<Source>)],
        userns_at: Option<usize>,
        readonly_at: Option<usize>,
    ) {
        if let Some(table) = vm {
            if kind != Kind::Vm {
                self.error(
                    table.at,
                    &path.key("vm"),
                    format!(
                        "vm options apply to kind = \"vm\" only (this workload is a {})",
                        kind.as_str()
                    ),
                );
            } else if let Some(boot) = table.full {
                for &(at, source, _) in sources {
                    self.error(
                        at,
                        &path.key(source),
                        format!(
                            "a full VM boots its own disk (`vm.{boot}`) and has no root \
                             filesystem: remove `{source}`, or remove `vm.disk` and `vm.iso` to \
                             boot a microVM from the {source}"
                        ),
                    );
                }
            }
        }
        if kind != Kind::Vm {
            return;
        }
        if let Some(at) = userns_at {
            self.error(
                at,
                &path.key("userns"),
                "a vm has no user namespace: its own kernel keeps it apart from the host, and \
                 root in the guest holds no host privileges",
            );
        }
        if let Some(at) = readonly_at {
            self.error(
                at,
                &path.key("readonly_rootfs"),
                "a vm's root filesystem is a disk its own kernel mounts; mount it read-only \
                 from inside the guest",
            );
        }
    }
}

/// A file on the host a VM boots from (`kernel`, `initrd`, `disk`, `iso`): an absolute path
/// without `..` segments, naming a file.
pub(crate) fn check_vm_file(p: &str) -> Result<(), String> {
    values::check_absolute(p)?;
    if p.split('/').any(|segment| segment == "..") {
        return Err(format!("must not contain a '..' segment, found {p:?}"));
    }
    if p.ends_with('/') {
        return Err(format!("must be a file, found the directory {p:?}"));
    }
    Ok(())
}

/// A microVM's kernel command line: one line of at most [`VM_MAX_CMDLINE`] bytes.
pub(crate) fn check_cmdline(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    if s.contains(['\n', '\r']) {
        return Err("must be one line (no newline)".into());
    }
    if s.len() > VM_MAX_CMDLINE {
        return Err(format!(
            "is {} bytes; a kernel command line holds at most {VM_MAX_CMDLINE}",
            s.len()
        ));
    }
    Ok(())
}
