//! `warren-agent`: the guest agent of warren's microVMs.
//!
//! It runs as PID 1 from the initramfs warren builds (`warren_vm::initramfs`): it mounts
//! `/proc`, `/sys` and `/dev`, loads the kernel modules listed in `/warren/modules`, finds its
//! virtio-serial port by name, waits for the host's `Hello`, and on `Start` mounts the
//! workload's disks, configures the guest (hostname, `/etc/hosts`, the NIC, the clock),
//! switches root and supervises the main process and the host's execs until it powers the VM
//! off. The protocol is `warren_vm::agent::proto`; the code is Linux-only ([`linux`]); on
//! other systems the binary only says so.

#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("warren-agent runs only inside a Linux guest");
    std::process::exit(1);
}
