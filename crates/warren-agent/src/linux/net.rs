//! The guest's network: the loopback interface and the NIC whose MAC address the host names,
//! configured with the classic socket ioctls (`SIOCSIFADDR`, `SIOCSIFNETMASK`,
//! `SIOCSIFFLAGS`, `SIOCADDRT`) — the guest has no `ip` tool and needs none.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use warren_vm::agent::NetConfig;

/// `struct rtentry` of `linux/route.h` (x86_64 and other LP64 layouts).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// The netmask of a prefix length.
pub fn netmask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= r.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name} too long"),
        ));
    }
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

struct Sock(OwnedFd);

impl Sock {
    fn new() -> io::Result<Sock> {
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sock(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl<T>(&self, req: libc::c_ulong, arg: &mut T, what: &str) -> io::Result<()> {
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, arg as *mut T) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(())
    }

    fn up(&self, name: &str) -> io::Result<()> {
        let mut r = ifreq(name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut r, name)?;
        unsafe { r.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        self.ioctl(libc::SIOCSIFFLAGS, &mut r, &format!("bring {name} up"))
    }
}

/// Brings `lo` up (the kernel gives it 127.0.0.1/8).
pub fn loopback_up() -> io::Result<()> {
    Sock::new()?.up("lo")
}

/// The interface whose MAC address is `mac` (from `/sys/class/net/*/address`).
pub fn find_interface(mac: &str) -> io::Result<String> {
    let want = mac.trim().to_ascii_lowercase();
    for e in std::fs::read_dir("/sys/class/net")? {
        let e = e?;
        let addr = std::fs::read_to_string(e.path().join("address")).unwrap_or_default();
        if addr.trim().eq_ignore_ascii_case(&want) {
            return Ok(e.file_name().to_string_lossy().into_owned());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no network interface has MAC address {mac}"),
    ))
}

/// Configures the NIC of `net`: address and netmask, up, and the default route; returns its
/// name.
pub fn configure(net: &NetConfig) -> io::Result<String> {
    let name = find_interface(&net.mac)?;
    let s = Sock::new()?;
    let mut r = ifreq(&name)?;
    r.ifr_ifru.ifru_addr = sockaddr(net.address);
    s.ioctl(
        libc::SIOCSIFADDR,
        &mut r,
        &format!("set {name}'s address {}", net.address),
    )?;
    let mut r = ifreq(&name)?;
    r.ifr_ifru.ifru_netmask = sockaddr(netmask(net.prefix));
    s.ioctl(
        libc::SIOCSIFNETMASK,
        &mut r,
        &format!("set {name}'s prefix /{}", net.prefix),
    )?;
    s.up(&name)?;
    if !net.gateway.is_unspecified() {
        let mut rt = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_gateway: sockaddr(net.gateway),
            rt_genmask: sockaddr(Ipv4Addr::UNSPECIFIED),
            rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: std::ptr::null_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        s.ioctl(
            libc::SIOCADDRT,
            &mut rt,
            &format!("add the default route via {}", net.gateway),
        )?;
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_of_prefixes() {
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(16), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(netmask(30), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }

    #[test]
    fn rtentry_has_the_kernel_layout() {
        // linux/route.h on LP64: 120 bytes.
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
        let a = sockaddr(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.sa_data[2..6], [10, 0, 0, 1]);
    }
}
