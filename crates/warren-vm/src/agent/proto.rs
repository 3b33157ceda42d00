//! The wire protocol between the host (the VM shim) and the guest agent, spoken over the
//! agent's virtio-serial port ([`crate::config::AGENT_PORT`]).
//!
//! **Framing.** A frame on the byte stream is `u32 BE len` (the length of everything after
//! it) | `u8 kind` | `u32 BE channel` | payload. A payload is at most [`MAX_PAYLOAD`] bytes; a
//! larger frame is an error ([`ProtoError::TooLarge`]), as is an unknown kind. [`read_frame`]
//! and [`write_frame`] work on blocking streams; [`Decoder`] takes bytes as they arrive, for
//! poll loops over non-blocking descriptors.
//!
//! **Payloads.** Control messages carry JSON of the typed structs below (serde); `Stdin`,
//! `Stdout` and `Stderr` carry raw bytes, and an empty `Stdin` payload means end of input.
//! `Freeze`, `Thaw` and `Ack` carry `{}`. [`Message`] is the typed view of a frame
//! ([`Message::to_frame`], [`Message::from_frame`]).
//!
//! **Channels.** Channel [`MAIN_CHANNEL`] (0) is the workload's main process; the host picks
//! channels ≥ 1 for execs, one per exec.
//!
//! **Conversation.**
//! - Handshake: the host connects and sends `Hello {version}`; the agent answers
//!   `Hello {version, kernel}` (its `uname` release). The agent never writes before it has read
//!   the host's Hello: a virtio-serial port with no host connected must not be written.
//! - `Start` (ch 0, [`StartSpec`]): the agent mounts the root and the other disks, sets the
//!   hostname, `/etc/hosts`, the NIC and the clock, switches root and spawns the main process;
//!   it answers `Started {pid}`, or `Error {message}` and powers off.
//! - `Exec` (ch N ≥ 1, [`ExecSpec`]): answered `Started {pid}` or `Error`; then `Stdout` and
//!   `Stderr` (a tty exec: everything as `Stdout`) until `Exit {code, signal}`.
//! - `CopyOut` / `CopyIn` (ch N ≥ 1, [`CopySpec`]): file copy out of and into the guest
//!   (`warren cp`), run by a child of the agent like an `Exec`'s process, as root in the
//!   guest's root: answered `Started` or `Error`; `CopyOut` streams the tar of the path as
//!   `Stdout`, `CopyIn` takes the tar as `Stdin` (ended by an empty one); then `Exit` (code 0,
//!   or 1 with the reason as `Stderr`). The agent resolves the path inside the guest's root
//!   and refuses hostile archives with the same rules as the host (`warren_image::copy`).
//! - Any channel: `Stdin` (host→agent), `Signal {signal}` to the channel's process,
//!   `Resize {rows, cols}` of a tty exec. Every process's stdin is a pipe (a tty exec's is
//!   its terminal) that stays open until the host sends an empty `Stdin`: a host with no
//!   input for the main process sends one right after `Started`, so it reads end of file as
//!   a container's would. On a terminal, end of input is written as its EOF character.
//! - Ch 0: `Freeze` / `Thaw` (fsfreeze every mounted workload filesystem / unfreeze; answered
//!   `Ack` or `Error`), `TimeSync {unix_ns}` (set the clock; `Ack`), `Hosts {text}` (the
//!   workload names changed: rewrite `/etc/hosts` in place; `Ack` or `Error`), `Poweroff {grace_ms}`
//!   (SIGTERM the main process, SIGKILL after the grace, sync, unmount, power off).
//! - When the main process exits the agent sends `Exit` on ch 0, syncs, unmounts and powers
//!   off. An exit `code` is 128 + the signal when a signal killed the process.

use std::io::{self, Read, Write};
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version both sides send in `Hello`.
pub const VERSION: u32 = 1;

/// The largest payload of one frame.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The bytes of a frame header after the length: kind and channel.
const HEADER: usize = 5;

/// The channel of the workload's main process.
pub const MAIN_CHANNEL: u32 = 0;

/// Errors of reading, writing and decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("agent protocol i/o: {0}")]
    Io(#[from] io::Error),
    #[error("agent frame of {0} payload bytes is larger than {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("agent frame length {0} is shorter than its header")]
    Short(u32),
    #[error("unknown agent frame kind {0}")]
    UnknownKind(u8),
    #[error("agent {kind:?} payload: {source}")]
    Json {
        kind: Kind,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = ProtoError> = std::result::Result<T, E>;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Start = 2,
    Exec = 3,
    Started = 4,
    Stdin = 5,
    Stdout = 6,
    Stderr = 7,
    Exit = 8,
    Signal = 9,
    Resize = 10,
    Freeze = 11,
    Thaw = 12,
    TimeSync = 13,
    Poweroff = 14,
    Error = 15,
    Ack = 16,
    CopyOut = 17,
    CopyIn = 18,
    Hosts = 19,
}

impl TryFrom<u8> for Kind {
    type Error = ProtoError;
    fn try_from(b: u8) -> Result<Kind> {
        use Kind::*;
        Ok(match b {
            1 => Hello,
            2 => Start,
            3 => Exec,
            4 => Started,
            5 => Stdin,
            6 => Stdout,
            7 => Stderr,
            8 => Exit,
            9 => Signal,
            10 => Resize,
            11 => Freeze,
            12 => Thaw,
            13 => TimeSync,
            14 => Poweroff,
            15 => Kind::Error,
            16 => Ack,
            17 => CopyOut,
            18 => CopyIn,
            19 => Hosts,
            other => return Err(ProtoError::UnknownKind(other)),
        })
    }
}

/// One frame: a kind, a channel and the payload's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub channel: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame with raw bytes (`Stdin`, `Stdout`, `Stderr`).
    pub fn data(kind: Kind, channel: u32, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            kind,
            channel,
            payload: payload.into(),
        }
    }

    /// A frame whose payload is `body` as JSON.
    pub fn control<T: Serialize>(kind: Kind, channel: u32, body: &T) -> Frame {
        Frame {
            kind,
            channel,
            payload: serde_json::to_vec(body).expect("protocol structs serialize"),
        }
    }

    /// The JSON payload as `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|source| ProtoError::Json {
            kind: self.kind,
            source,
        })
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(ProtoError::TooLarge(self.payload.len()));
        }
        let len = (HEADER + self.payload.len()) as u32;
        let mut b = Vec::with_capacity(4 + len as usize);
        b.extend_from_slice(&len.to_be_bytes());
        b.push(self.kind as u8);
        b.extend_from_slice(&self.channel.to_be_bytes());
        b.extend_from_slice(&self.payload);
        Ok(b)
    }
}

/// Checks a frame's length field; the payload's length.
fn payload_len(len: u32) -> Result<usize> {
    let len_us = len as usize;
    if len_us < HEADER {
        return Err(ProtoError::Short(len));
    }
    if len_us - HEADER > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge(len_us - HEADER));
    }
    Ok(len_us - HEADER)
}

/// Reads one frame; `None` on a clean end of stream at a frame boundary (an end inside a frame
/// is an `UnexpectedEof` error).
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let n = payload_len(u32::from_be_bytes(len))?;
    let mut head = [0u8; HEADER];
    r.read_exact(&mut head)?;
    let kind = Kind::try_from(head[0])?;
    let channel = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    let mut payload = vec![0u8; n];
    r.read_exact(&mut payload)?;
    Ok(Some(Frame {
        kind,
        channel,
        payload,
    }))
}

/// Writes one frame (in one `write_all`, so frames from one writer never interleave).
pub fn write_frame(w: &mut impl Write, f: &Frame) -> Result<()> {
    w.write_all(&f.encode()?)?;
    Ok(())
}

/// An incremental frame decoder: [`Decoder::push`] the bytes a non-blocking read returned,
/// then take frames with [`Decoder::next`] until it gives `Ok(None)`. After an error the
/// stream is out of step and the decoder keeps returning the error.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the undecoded bytes start in `buf`.
    start: usize,
    broken: Option<String>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Frame>> {
        if let Some(e) = &self.broken {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()).into());
        }
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
        let parsed = payload_len(len).and_then(|n| {
            if avail.len() < 4 + HEADER {
                return Ok(None);
            }
            Kind::try_from(avail[4]).map(|k| Some((n, k)))
        });
        let (n, kind) = match parsed {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.broken = Some(e.to_string());
                return Err(e);
            }
        };
        if avail.len() < 4 + HEADER + n {
            return Ok(None);
        }
        let channel = u32::from_be_bytes([avail[5], avail[6], avail[7], avail[8]]);
        let payload = avail[4 + HEADER..4 + HEADER + n].to_vec();
        self.start += 4 + HEADER + n;
        if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(Frame {
            kind,
            channel,
            payload,
        }))
    }

    /// Bytes received but not yet decoded into a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// `Hello`: the host sends its version; the agent answers with its version and the guest
/// kernel's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// A filesystem on a guest block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The guest device, like `/dev/vda`.
    pub device: String,
    /// Where it is mounted: `/` for the root, else a path inside the root.
    pub path: String,
    /// The filesystem type, like `ext4`.
    pub fstype: String,
    pub readonly: bool,
}

/// The guest's network interface, picked by its MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetConfig {
    /// `52:54:00:12:34:56`.
    pub mac: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

/// `Start`: how to set the guest up and what to run as the main process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSpec {
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub cwd: String,
    /// `uid[:gid]`, numeric; root when absent.
    pub user: Option<String>,
    pub hostname: String,
    pub root: Mount,
    pub mounts: Vec<Mount>,
    pub net: Option<NetConfig>,
    /// The content of `/etc/hosts` to write into the root.
    pub hosts: Option<String>,
    /// The host's clock when it sent the message.
    pub time_unix_ns: u64,
}

/// `Exec`: a further process in the running guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// Run on a pseudo-terminal of `rows` × `cols`; its output is all `Stdout`.
    pub tty: bool,
    pub rows: u16,
    pub cols: u16,
}

/// `CopyOut` and `CopyIn`: a path of the guest as a tar stream, or a tar stream placed there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySpec {
    /// An absolute path in the guest (`DIR/.` for a directory's contents).
    pub path: String,
    /// `CopyIn`: the stream holds a directory's contents, not one entry.
    #[serde(default)]
    pub contents: bool,
    /// `CopyIn`: the path must be an existing directory.
    #[serde(default)]
    pub directory: bool,
    /// `CopyIn`: keep the archive's owners (otherwise root's).
    #[serde(default)]
    pub keep_owners: bool,
}

/// `Started`: the process of a `Start` or `Exec` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub pid: i32,
}

/// `Exit`: the channel's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit status, or 128 + the signal that killed it.
    pub code: i32,
    pub signal: Option<i32>,
}

/// `Signal`: deliver a signal to the channel's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub signal: i32,
}

/// `Resize`: the new size of a tty exec's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resize {
    pub rows: u16,
    pub cols: u16,
}

/// `Hosts`: the new text of the guest's `/etc/hosts` (the workloads' names changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hosts {
    pub text: String,
}

/// `TimeSync`: set the guest's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSync {
    pub unix_ns: u64,
}

/// `Poweroff`: stop the main process (SIGTERM, SIGKILL after `grace_ms`) and power off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poweroff {
    pub grace_ms: u64,
}

/// `Error`: a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    pub message: String,
}

/// The payload of `Freeze`, `Thaw` and `Ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Empty {}

/// A frame's typed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    Start(Box<StartSpec>),
    Exec(ExecSpec),
    Started(Started),
    Stdin(Vec<u8>),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(Exit),
    Signal(Signal),
    Resize(Resize),
    Freeze,
    Thaw,
    TimeSync(TimeSync),
    Hosts(Hosts),
    Poweroff(Poweroff),
    Error(ErrorMsg),
    Ack,
    CopyOut(CopySpec),
    CopyIn(CopySpec),
}

impl Message {
    /// An `Error` message.
    pub fn error(message: impl Into<String>) -> Message {
        Message::Error(ErrorMsg {
            message: message.into(),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::Start(_) => Kind::Start,
            Message::Exec(_) => Kind::Exec,
            Message::Started(_) => Kind::Started,
            Message::Stdin(_) => Kind::Stdin,
            Message::Stdout(_) => Kind::Stdout,
            Message::Stderr(_) => Kind::Stderr,
            Message::Exit(_) => Kind::Exit,
            Message::Signal(_) => Kind::Signal,
            Message::Resize(_) => Kind::Resize,
            Message::Freeze => Kind::Freeze,
            Message::Thaw => Kind::Thaw,
            Message::TimeSync(_) => Kind::TimeSync,
            Message::Hosts(_) => Kind::Hosts,
            Message::Poweroff(_) => Kind::Poweroff,
            Message::Error(_) => Kind::Error,
            Message::Ack => Kind::Ack,
            Message::CopyOut(_) => Kind::CopyOut,
            Message::CopyIn(_) => Kind::CopyIn,
        }
    }

    /// The frame carrying this message on `channel`.
    pub fn to_frame(&self, channel: u32) -> Frame {
        let k = self.kind();
        match self {
            Message::Hello(m) => Frame::control(k, channel, m),
            Message::Start(m) => Frame::control(k, channel, m),
            Message::Exec(m) => Frame::control(k, channel, m),
            Message::Started(m) => Frame::control(k, channel, m),
            Message::Stdin(b) | Message::Stdout(b) | Message::Stderr(b) => {
                Frame::data(k, channel, b.clone())
            }
            Message::Exit(m) => Frame::control(k, channel, m),
            Message::Signal(m) => Frame::control(k, channel, m),
            Message::Resize(m) => Frame::control(k, channel, m),
            Message::Freeze | Message::Thaw | Message::Ack => Frame::control(k, channel, &Empty {}),
            Message::TimeSync(m) => Frame::control(k, channel, m),
            Message::Hosts(m) => Frame::control(k, channel, m),
            Message::Poweroff(m) => Frame::control(k, channel, m),
            Message::Error(m) => Frame::control(k, channel, m),
            Message::CopyOut(m) | Message::CopyIn(m) => Frame::control(k, channel, m),
        }
    }

    /// The message a frame carries (an empty payload is accepted for `Freeze`, `Thaw`, `Ack`).
    pub fn from_frame(f: &Frame) -> Result<Message> {
        Ok(match f.kind {
            Kind::Hello => Message::Hello(f.parse()?),
            Kind::Start => Message::Start(Box::new(f.parse()?)),
            Kind::Exec => Message::Exec(f.parse()?),
            Kind::Started => Message::Started(f.parse()?),
            Kind::Stdin => Message::Stdin(f.payload.clone()),
            Kind::Stdout => Message::Stdout(f.payload.clone()),
            Kind::Stderr => Message::Stderr(f.payload.clone()),
            Kind::Exit => Message::Exit(f.parse()?),
            Kind::Signal => Message::Signal(f.parse()?),
            Kind::Resize => Message::Resize(f.parse()?),
            Kind::Freeze | Kind::Thaw | Kind::Ack => {
                if !f.payload.is_empty() {
                    f.parse::<serde_json::Value>()?;
                }
                match f.kind {
                    Kind::Freeze => Message::Freeze,
                    Kind::Thaw => Message::Thaw,
                    _ => Message::Ack,
                }
            }
            Kind::TimeSync => Message::TimeSync(f.parse()?),
            Kind::Hosts => Message::Hosts(f.parse()?),
            Kind::Poweroff => Message::Poweroff(f.parse()?),
            Kind::Error => Message::Error(f.parse()?),
            Kind::CopyOut => Message::CopyOut(f.parse()?),
            Kind::CopyIn => Message::CopyIn(f.parse()?),
        })
    }
}

/// Writes `m` on `channel`.
pub fn write_message(w: &mut impl Write, channel: u32, m: &Message) -> Result<()> {
    write_frame(w, &m.to_frame(channel))
}

/// Reads the next message and its channel; `None` at a clean end of stream.
pub fn read_message(r: &mut impl Read) -> Result<Option<(u32, Message)>> {
    match read_frame(r)? {
        None => Ok(None),
        Some(f) => Ok(Some((f.channel, Message::from_frame(&f)?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> StartSpec {
        StartSpec {
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: Some("1000:1000".into()),
            hostname: "web".into(),
            root: Mount {
                device: "/dev/vda".into(),
                path: "/".into(),
                fstype: "ext4".into(),
                readonly: false,
            },
            mounts: vec![Mount {
                device: "/dev/vdb".into(),
                path: "/data".into(),
                fstype: "ext4".into(),
                readonly: true,
            }],
            net: Some(NetConfig {
                mac: "52:54:00:01:02:03".into(),
                address: Ipv4Addr::new(10, 88, 0, 5),
                prefix: 16,
                gateway: Ipv4Addr::new(10, 88, 0, 1),
            }),
            hosts: Some("127.0.0.1 localhost\n".into()),
            time_unix_ns: 1_700_000_000_000_000_000,
        }
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                version: VERSION,
                kernel: None,
            }),
            Message::Hello(Hello {
                version: VERSION,
                kernel: Some("6.1.0-28-amd64".into()),
            }),
            Message::Start(Box::new(start())),
            Message::Exec(ExecSpec {
                argv: vec!["cat".into()],
                env: vec![],
                cwd: None,
                tty: true,
                rows: 24,
                cols: 80,
            }),
            Message::Started(Started { pid: 42 }),
            Message::Stdin(b"in\0put".to_vec()),
            Message::Stdin(Vec::new()),
            Message::Stdout(vec![0xff, 0, 1]),
            Message::Stderr(b"err\n".to_vec()),
            Message::Exit(Exit {
                code: 137,
                signal: Some(9),
            }),
            Message::Signal(Signal { signal: 15 }),
            Message::Resize(Resize {
                rows: 50,
                cols: 132,
            }),
            Message::Freeze,
            Message::Thaw,
            Message::TimeSync(TimeSync { unix_ns: 5 }),
            Message::Hosts(Hosts {
                text: "10.88.0.2 db db.warren\n".into(),
            }),
            Message::Poweroff(Poweroff { grace_ms: 10_000 }),
            Message::error("no such device /dev/vdz"),
            Message::Ack,
            Message::CopyOut(CopySpec {
                path: "/etc/.".into(),
                contents: false,
                directory: false,
                keep_owners: false,
            }),
            Message::CopyIn(CopySpec {
                path: "/srv".into(),
                contents: true,
                directory: true,
                keep_owners: true,
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_stream() {
        let msgs = all_messages();
        let mut wire = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            write_message(&mut wire, i as u32, m).unwrap();
        }
        let mut r = &wire[..];
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(read_message(&mut r).unwrap(), Some((i as u32, m.clone())));
        }
        assert_eq!(read_message(&mut r).unwrap(), None);
    }

    #[test]
    fn the_frame_layout_is_length_kind_channel_payload() {
        let b = Message::Stdout(b"ab".to_vec())
            .to_frame(0x0102_0304)
            .encode()
            .unwrap();
        assert_eq!(b, [0, 0, 0, 7, 6, 1, 2, 3, 4, b'a', b'b']);
        let b = Message::Ack.to_frame(0).encode().unwrap();
        assert_eq!(b, [0, 0, 0, 7, 16, 0, 0, 0, 0, b'{', b'}']);
        let hello = Message::Hello(Hello {
            version: 1,
            kernel: None,
        })
        .to_frame(0);
        assert_eq!(hello.payload, br#"{"version":1}"#);
        // Freeze, Thaw and Ack also accept an empty payload.
        let f = Frame::data(Kind::Ack, 0, Vec::new());
        assert_eq!(Message::from_frame(&f).unwrap(), Message::Ack);
    }

    #[test]
    fn the_decoder_takes_bytes_in_any_pieces() {
        let msgs = all_messages();
        let mut wire = Vec::new();
        for m in &msgs {
            write_message(&mut wire, 3, m).unwrap();
        }
        for step in [1, 2, 7, 100, wire.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                d.push(chunk);
                while let Some(f) = d.next().unwrap() {
                    got.push(Message::from_frame(&f).unwrap());
                }
            }
            assert_eq!(got, msgs, "chunks of {step}");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn the_largest_payload_passes_and_one_more_byte_is_refused() {
        let big = Frame::data(Kind::Stdout, 1, vec![7u8; MAX_PAYLOAD]);
        let mut wire = Vec::new();
        write_frame(&mut wire, &big).unwrap();
        assert_eq!(read_frame(&mut &wire[..]).unwrap(), Some(big));

        let too_big = Frame::data(Kind::Stdout, 1, vec![7u8; MAX_PAYLOAD + 1]);
        assert!(matches!(
            write_frame(&mut Vec::new(), &too_big),
            Err(ProtoError::TooLarge(n)) if n == MAX_PAYLOAD + 1
        ));
        let len = (HEADER + MAX_PAYLOAD + 1) as u32;
        let mut wire = len.to_be_bytes().to_vec();
        wire.extend_from_slice(&[6, 0, 0, 0, 1]);
        assert!(matches!(
            read_frame(&mut &wire[..]),
            Err(ProtoError::TooLarge(_))
        ));
        let mut d = Decoder::new();
        d.push(&wire);
        assert!(matches!(d.next(), Err(ProtoError::TooLarge(_))));
        // The stream is out of step: the decoder stays broken.
        d.push(&Message::Ack.to_frame(0).encode().unwrap());
        assert!(d.next().is_err());
    }

    #[test]
    fn bad_frames_are_errors() {
        // A length shorter than the header.
        let wire = [0, 0, 0, 4, 1, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut &wire[..]),
            Err(ProtoError::Short(4))
        ));
        // An unknown kind.
        let wire = [0, 0, 0, 5, 99, 0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut &wire[..]),
            Err(ProtoError::UnknownKind(99))
        ));
        let mut d = Decoder::new();
        d.push(&wire);
        assert!(matches!(d.next(), Err(ProtoError::UnknownKind(99))));
        // An end of stream inside a frame.
        let wire = [0, 0, 0, 9, 6, 0, 0, 0, 0, b'x'];
        match read_frame(&mut &wire[..]) {
            Err(ProtoError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_frame(&mut &[0u8, 0][..]),
            Err(ProtoError::Io(_))
        ));
        // A control payload that is not the struct.
        let f = Frame::data(Kind::Exit, 0, b"{\"code\":\"x\"}".to_vec());
        assert!(matches!(
            Message::from_frame(&f),
            Err(ProtoError::Json {
                kind: Kind::Exit,
                ..
            })
        ));
    }

    #[test]
    fn every_kind_byte_maps_back() {
        for b in 1..=19u8 {
            assert_eq!(Kind::try_from(b).unwrap() as u8, b);
        }
        assert!(Kind::try_from(0).is_err());
        assert!(Kind::try_from(20).is_err());
    }

    #[test]
    fn the_start_spec_json_names_every_field() {
        let v = serde_json::to_value(start()).unwrap();
        for k in [
            "argv",
            "env",
            "cwd",
            "user",
            "hostname",
            "root",
            "mounts",
            "net",
            "hosts",
            "time_unix_ns",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        assert_eq!(v["net"]["address"], "10.88.0.5");
        assert_eq!(v["root"]["device"], "/dev/vda");
    }
}
