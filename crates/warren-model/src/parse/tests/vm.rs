//! Tests of the `[workload.NAME.vm]` table: microVMs and full VMs, every refused value and
//! combination with its position, the defaults of a vm and a round trip of a full table.

use super::*;
use crate::spec::{VmFirmware, VmOptions, VM_DEFAULT_MEMORY};
use std::path::PathBuf;

/// The diagnostics of a `[workload.web]` of kind vm with `body` (the caller gives the source).
fn vm_errors(body: &str) -> Vec<String> {
    errors(&format!("[workload.web]\nkind = \"vm\"\n{body}\n"))
}

#[test]
fn a_microvm_takes_a_kernel_initrd_and_cmdline() {
    let w = web(r#"
[workload.web]
kind = "vm"
image = "alpine:3.20"

[workload.web.vm]
kernel = "/srv/vm/vmlinuz"
initrd = "/srv/vm/initrd.img"
cmdline = "quiet console=ttyS0"
console = true
"#);
    assert_eq!(w.kind, Kind::Vm);
    assert_eq!(w.source, Source::Image("alpine:3.20".into()));
    assert_eq!(
        w.rootfs_source(),
        Some(&Source::Image("alpine:3.20".into()))
    );
    assert_eq!(
        w.vm,
        VmOptions {
            kernel: Some(PathBuf::from("/srv/vm/vmlinuz")),
            initrd: Some(PathBuf::from("/srv/vm/initrd.img")),
            cmdline: Some("quiet console=ttyS0".into()),
            disk: None,
            iso: None,
            disk_size: None,
            firmware: VmFirmware::Bios,
            console: true,
        }
    );
    assert!(!w.vm.is_full_vm());
}

#[test]
fn a_full_vm_boots_its_disk_or_iso_without_a_source() {
    let p = ok(r#"
[workload.web]
kind = "vm"
vm = { disk = "/srv/vm/disk.qcow2", iso = "/srv/iso/install.iso", firmware = "uefi" }

[workload.cd]
kind = "vm"

[workload.cd.vm]
iso = "/srv/iso/live.iso"
"#);
    let w = &p.spec.workloads["web"];
    assert!(w.vm.is_full_vm());
    assert_eq!(w.rootfs_source(), None);
    assert_eq!(
        w.vm.disk.as_deref(),
        Some(std::path::Path::new("/srv/vm/disk.qcow2"))
    );
    assert_eq!(
        w.vm.iso.as_deref(),
        Some(std::path::Path::new("/srv/iso/install.iso"))
    );
    assert_eq!(w.vm.firmware, VmFirmware::Uefi);
    let cd = &p.spec.workloads["cd"];
    assert!(cd.vm.is_full_vm() && cd.vm.firmware == VmFirmware::Bios);
    // Where the daemon's checks point: the value of each key.
    assert_eq!(p.locate("workload.cd.vm.iso"), (10, 7));
    assert_eq!(p.locate("workload.web.vm.disk"), (4, 15));
}

#[test]
fn a_vm_defaults_to_512_mib_and_one_cpu() {
    let w = web("[workload.web]\nkind = \"vm\"\nworld = \"busybox\"\n");
    assert!(w.vm.is_default());
    assert_eq!(w.resources.memory, None, "the default is applied on read");
    assert_eq!(w.vm_memory_bytes(), VM_DEFAULT_MEMORY);
    assert_eq!(w.vm_memory_bytes(), 512 << 20);
    assert_eq!(w.vm_cpus(), 1);
    let w = web(
        "[workload.web]\nkind = \"vm\"\nworld = \"busybox\"\nresources = { memory = \"2G\", cpus = 1.5 }\n",
    );
    assert_eq!(w.vm_memory_bytes(), 2 << 30);
    assert_eq!(w.vm_cpus(), 2, "fractions round up to whole vCPUs");
}

#[test]
fn unknown_keys_get_a_suggestion() {
    assert_eq!(
        vm_errors("world = \"busybox\"\nvm = { kernal = \"/k\", bogus = 1 }"),
        [
            "4:8: workload.web.vm.kernal: unknown key; did you mean `kernel`?",
            "4:23: workload.web.vm.bogus: unknown key; expected one of kernel, initrd, cmdline, disk, iso, disk_size, firmware, console",
        ]
    );
}

#[test]
fn every_bad_value_is_located_and_names_its_field() {
    let long = "x".repeat(2049);
    let body = format!(
        r#"world = "busybox"

[workload.web.vm]
kernel = "boot/vmlinuz"
initrd = "/srv/../etc/initrd"
cmdline = "{long}"
console = "yes"
firmware = "efi"
"#
    );
    assert_eq!(
        vm_errors(&body),
        [
            "6:10: workload.web.vm.kernel: must be an absolute path, found \"boot/vmlinuz\"",
            "7:10: workload.web.vm.initrd: must not contain a '..' segment, found \"/srv/../etc/initrd\"",
            "8:11: workload.web.vm.cmdline: is 2049 bytes; a kernel command line holds at most 2048",
            "9:11: workload.web.vm.console: expected true or false, found string",
            "10:12: workload.web.vm.firmware: unknown value \"efi\"; did you mean \"uefi\"?",
        ]
    );
    // `disk` and `iso` make it a full VM, so `world` and `cmdline` are refused too.
    assert_eq!(
        vm_errors("world = \"busybox\"\nvm = { cmdline = \"a\\nb\", disk = 7, iso = \"/srv/\" }"),
        [
            "3:1: workload.web.world: a full VM boots its own disk (`vm.disk`) and has no root filesystem: remove `world`, or remove `vm.disk` and `vm.iso` to boot a microVM from the world",
            "4:8: workload.web.vm.cmdline: `cmdline` is for a microVM; a full VM boots its own `disk` through its firmware (remove `cmdline`, or remove `disk` and `iso` to boot a kernel)",
            "4:18: workload.web.vm.cmdline: must be one line (no newline)",
            "4:33: workload.web.vm.disk: expected a string, found integer",
            "4:42: workload.web.vm.iso: must be a file, found the directory \"/srv/\"",
        ]
    );
    assert_eq!(
        vm_errors("world = \"busybox\"\nvm = { kernel = \"/k\\u0000\" }"),
        ["4:17: workload.web.vm.kernel: must not contain a NUL character"]
    );
    assert_eq!(
        vm_errors("world = \"busybox\"\nvm = { cmdline = \"a\\u0000\" }"),
        ["4:18: workload.web.vm.cmdline: must not contain a NUL character"]
    );
    assert_eq!(
        vm_errors("world = \"busybox\"\nvm = \"/boot/vmlinuz\""),
        ["4:6: workload.web.vm: expected a table, found string; e.g. [workload.NAME.vm] with disk = \"/srv/vm/disk.qcow2\", console = true"]
    );
}

#[test]
fn a_cmdline_of_exactly_2048_bytes_is_accepted() {
    let w = web(&format!(
        "[workload.web]\nkind = \"vm\"\nworld = \"busybox\"\nvm = {{ cmdline = \"{}\" }}\n",
        "x".repeat(2048)
    ));
    assert_eq!(w.vm.cmdline.map(|c| c.len()), Some(2048));
}

#[test]
fn the_table_needs_kind_vm() {
    assert_eq!(
        web_error("[workload.web.vm]\nkernel = \"/srv/vmlinuz\""),
        "3:15: workload.web.vm: vm options apply to kind = \"vm\" only (this workload is a container)"
    );
    // `kind` may come after the table, and a full VM's table on a jail is refused alone.
    assert_eq!(
        errors("[workload.web]\nvm = { disk = \"/srv/d.img\" }\nkind = \"jail\"\n"),
        ["2:1: workload.web.vm: vm options apply to kind = \"vm\" only (this workload is a jail)"]
    );
}

#[test]
fn a_full_vm_takes_no_world_image_or_recipe() {
    for (source, value, column) in [
        ("world", "\"busybox\"", 1),
        ("image", "\"alpine:3.20\"", 1),
        ("recipe", "\"lang/ruby\"", 1),
    ] {
        assert_eq!(
            vm_errors(&format!("{source} = {value}\nvm = {{ iso = \"/srv/i.iso\" }}")),
            [format!(
                "3:{column}: workload.web.{source}: a full VM boots its own disk (`vm.iso`) and has no root filesystem: remove `{source}`, or remove `vm.disk` and `vm.iso` to boot a microVM from the {source}"
            )]
        );
    }
}

#[test]
fn a_full_vm_takes_no_kernel_initrd_or_cmdline() {
    assert_eq!(
        vm_errors("vm = { kernel = \"/k\", disk = \"/d.img\", initrd = \"/i\" }"),
        [
            "3:8: workload.web.vm.kernel: `kernel` is for a microVM; a full VM boots its own `disk` through its firmware (remove `kernel`, or remove `disk` and `iso` to boot a kernel)",
            "3:40: workload.web.vm.initrd: `initrd` is for a microVM; a full VM boots its own `disk` through its firmware (remove `initrd`, or remove `disk` and `iso` to boot a kernel)",
        ]
    );
}

#[test]
fn disk_size_sizes_a_full_vms_own_disk_only() {
    let w =
        web("[workload.web]\nkind = \"vm\"\nvm = { iso = \"/srv/i.iso\", disk_size = \"20G\" }\n");
    assert_eq!(w.vm.disk_size, Some(20 << 30));
    assert_eq!(
        vm_errors("world = \"busybox\"\nvm = { disk_size = \"1G\" }"),
        ["4:8: workload.web.vm.disk_size: `disk_size` sizes a full VM's own disk (`disk` or `iso`); a microVM's disks are its root filesystem and its datasets"]
    );
    assert_eq!(
        vm_errors("vm = { iso = \"/i.iso\", disk_size = \"1M\" }"),
        ["3:36: workload.web.vm.disk_size: 1 MiB is below the minimum of 16 MiB"]
    );
}

#[test]
fn uefi_is_for_full_vms_only() {
    assert_eq!(
        vm_errors("world = \"busybox\"\n[workload.web.vm]\nfirmware = \"uefi\""),
        ["5:12: workload.web.vm.firmware: firmware = \"uefi\" is for a full VM (`disk` or `iso`); a microVM boots its kernel directly"]
    );
    let w =
        web("[workload.web]\nkind = \"vm\"\nworld = \"busybox\"\nvm = { firmware = \"bios\" }\n");
    assert!(w.vm.is_default(), "bios is the default");
}

#[test]
fn a_vm_needs_a_source_or_a_disk() {
    assert_eq!(
        vm_errors("vm = { console = true }"),
        ["1:11: workload.web: needs `world`, `image` or `recipe` (a microVM), or `vm.disk` or `vm.iso` (a full VM)"]
    );
    assert_eq!(
        vm_errors(""),
        ["1:11: workload.web: needs `world`, `image` or `recipe` (a microVM), or `vm.disk` or `vm.iso` (a full VM)"]
    );
    // A malformed disk still makes it a full VM: only the disk is reported.
    assert_eq!(
        vm_errors("vm = { disk = \"d.img\" }"),
        ["3:15: workload.web.vm.disk: must be an absolute path, found \"d.img\""]
    );
}

#[test]
fn userns_readonly_rootfs_and_jail_options_are_refused_on_a_vm() {
    assert_eq!(
        vm_errors("world = \"busybox\"\nuserns = true\nreadonly_rootfs = true\njail = { vnet = false }"),
        [
            "4:1: workload.web.userns: a vm has no user namespace: its own kernel keeps it apart from the host, and root in the guest holds no host privileges",
            "5:1: workload.web.readonly_rootfs: a vm's root filesystem is a disk its own kernel mounts; mount it read-only from inside the guest",
            "6:1: workload.web.jail: jail options apply to kind \"jail\" or \"container\" (a container runs as a jail on FreeBSD hosts), not to a vm",
        ]
    );
    // The same keys stay valid on a container.
    let w = web("[workload.web]\nworld = \"busybox\"\nuserns = true\nreadonly_rootfs = true\n");
    assert!(w.userns && w.readonly_rootfs);
}

#[test]
fn vm_options_round_trip_through_the_file_and_json() {
    let text = r#"[workload.micro]
kind = "vm"
world = "busybox"
resources = { memory = "1G", cpus = 2 }

[workload.micro.vm]
kernel = "/srv/vm/vmlinuz"
initrd = "/srv/vm/initrd.img"
cmdline = "quiet \"quoted\" console=ttyS0"
console = true

[workload.full]
kind = "vm"

[workload.full.vm]
disk = "/srv/vm/disk.raw"
iso = "/srv/iso/debian.iso"
firmware = "uefi"
console = true
"#;
    let spec = ok(text).spec;
    let out = crate::render::to_toml(&spec, "");
    let again = ok(&out).spec;
    assert_eq!(again, spec, "{out}");
    for w in spec.workloads.values() {
        let json = serde_json::to_value(w).unwrap();
        let back: WorkloadSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, w, "{json}");
    }
    let full = serde_json::to_value(&spec.workloads["full"]).unwrap();
    assert_eq!(
        full["vm"],
        serde_json::json!({
            "disk": "/srv/vm/disk.raw",
            "iso": "/srv/iso/debian.iso",
            "firmware": "uefi",
            "console": true,
        })
    );
}
