//! The serial console hub of a VM's shim. QEMU's console chardev is a unix socket server that
//! takes one connection at a time ([`SERIAL_SOCKET`](super::SERIAL_SOCKET)); the shim holds
//! that connection for the VM's whole life and serves
//! [`CONSOLE_SOCKET`](super::CONSOLE_SOCKET) in its place, where any number of clients
//! (`warren console`, through the daemon) attach and detach:
//!
//! - everything the guest prints goes to every attached client and, for a full VM, into the
//!   workload's log (a full VM's console is its log); a client that does not take its output
//!   within [`CLIENT_WRITE_TIMEOUT`] is dropped, so one stuck client never stalls the guest;
//! - what a client writes goes to the guest's serial port;
//! - when QEMU ends, every client's connection is closed.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_runtime::logs::{LogWriter, Stream};

/// How long writing the guest's output to one client may block before it is dropped.
pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the hub waits for QEMU's serial socket to accept it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Clients {
    next: u64,
    list: Vec<(u64, UnixStream)>,
}

/// Connects to QEMU's serial socket and relays it until QEMU closes it: the guest's output to
/// `log` (if any) and every client accepted on `listener` (if any), clients' input to the
/// guest. Returns when the console has closed (or QEMU never accepted the connection).
pub fn run(serial: &Path, listener: Option<UnixListener>, mut log: Option<LogWriter>) {
    let Some(qemu) = connect(serial) else {
        return;
    };
    let Ok(to_guest) = qemu.try_clone() else {
        return;
    };
    let to_guest = Arc::new(Mutex::new(to_guest));
    let clients = Arc::new(Mutex::new(Clients {
        next: 0,
        list: Vec::new(),
    }));
    if let Some(listener) = listener {
        let clients = clients.clone();
        std::thread::spawn(move || accept(listener, clients, to_guest));
    }
    let mut qemu = qemu;
    let mut buf = [0u8; 8192];
    loop {
        let n = match qemu.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(l) = log.as_mut() {
            let _ = l.write(Stream::Stdout, &buf[..n]);
        }
        let mut c = clients.lock().unwrap();
        c.list.retain_mut(|(_, s)| {
            let ok = s.write_all(&buf[..n]).is_ok();
            if !ok {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            ok
        });
    }
    if let Some(l) = log.as_mut() {
        let _ = l.finish(Stream::Stdout);
    }
    for (_, s) in clients.lock().unwrap().list.drain(..) {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

fn connect(serial: &Path) -> Option<UnixStream> {
    let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        match UnixStream::connect(serial) {
            Ok(s) => return Some(s),
            Err(_) if std::time::Instant::now() >= deadline => return None,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn accept(listener: UnixListener, clients: Arc<Mutex<Clients>>, to_guest: Arc<Mutex<UnixStream>>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let Ok(out) = conn.try_clone() else { continue };
        let _ = out.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        let id = {
            let mut c = clients.lock().unwrap();
            c.next += 1;
            let id = c.next;
            c.list.push((id, out));
            id
        };
        let clients = clients.clone();
        let to_guest = to_guest.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_guest.lock().unwrap().write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            // The client left (or the guest is gone): it gets no more output.
            clients.lock().unwrap().list.retain(|(i, _)| *i != id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_until(s: &mut UnixStream, want: &str) -> String {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&got).contains(want) {
            let n = s.read(&mut buf).expect("read before the timeout");
            assert!(n > 0, "closed before {want:?}: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[test]
    fn clients_share_the_console_and_are_closed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let serial = dir.path().join("serial.sock");
        let attach = dir.path().join("console.sock");
        let qemu_side = UnixListener::bind(&serial).unwrap();
        let listener = UnixListener::bind(&attach).unwrap();
        let logs = dir.path().join("logs");
        let log = LogWriter::open(&logs, 1 << 20, 2).unwrap();
        let hub = {
            let serial = serial.clone();
            std::thread::spawn(move || run(&serial, Some(listener), Some(log)))
        };
        let (mut guest, _) = qemu_side.accept().unwrap();
        let mut a = UnixStream::connect(&attach).unwrap();
        let mut b = UnixStream::connect(&attach).unwrap();
        // Both attached clients see the guest's output once they are accepted (each in its
        // own time: output before a client's accept is not for it).
        let mut seen = [false, false];
        for _ in 0..100 {
            guest.write_all(b"ping\n").unwrap();
            for (s, c) in seen.iter_mut().zip([&mut a, &mut b]) {
                c.set_read_timeout(Some(Duration::from_millis(25))).unwrap();
                let mut buf = [0u8; 64];
                if matches!(c.read(&mut buf), Ok(n) if n > 0) {
                    *s = true;
                }
            }
            if seen == [true, true] {
                break;
            }
        }
        assert_eq!(seen, [true, true], "a client saw no output");
        guest.write_all(b"boot-marker\n").unwrap();
        read_until(&mut a, "boot-marker");
        read_until(&mut b, "boot-marker");
        // A client's input reaches the guest.
        b.write_all(b"typed\n").unwrap();
        guest
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = guest.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"typed\n");
        // A client that leaves does not disturb the others.
        drop(b);
        guest.write_all(b"after-b-left\n").unwrap();
        read_until(&mut a, "after-b-left");
        // QEMU closing its end closes every client and the log has the output.
        drop(guest);
        hub.join().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        let _ = a.read_to_end(&mut rest);
        let lines = warren_runtime::logs::read_tail(&logs, None).unwrap();
        let text: String = lines.iter().map(|l| l.text.clone()).collect();
        assert!(text.contains("boot-marker"), "{text}");
    }
}
