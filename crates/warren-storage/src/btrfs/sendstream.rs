//! The btrfs send stream format, read as it passes: the first command's path rewritten
//! ([`rewrite_first_path`], with its crc32c) and the framing checked to its end command
//! ([`SendStreamCheck`]).

/// The `path` attribute of send stream commands.
pub(super) const SEND_ATTR_PATH: u16 = 15;

/// Rewrites the `path` attribute of the first command of a send stream (`head` holds at least
/// the header and that whole command) to `name`, fixing the command's length and crc32c.
pub fn rewrite_first_path(head: &[u8], name: &str) -> std::result::Result<Vec<u8>, String> {
    let short = || "the stream is too short for its first command".to_string();
    let cmd_hdr = head.get(17..27).ok_or_else(short)?;
    let len = u32::from_le_bytes(cmd_hdr[0..4].try_into().unwrap()) as usize;
    let cmd = u16::from_le_bytes(cmd_hdr[4..6].try_into().unwrap());
    let body = head.get(27..27 + len).ok_or_else(short)?;
    let mut new_body = Vec::with_capacity(len + name.len());
    let mut rest = body;
    let mut found = false;
    while !rest.is_empty() {
        let (t, l) = match rest {
            [a, b, c, d, ..] => (u16::from_le_bytes([*a, *b]), u16::from_le_bytes([*c, *d])),
            _ => return Err("corrupt attribute in the first command".into()),
        };
        let value = rest
            .get(4..4 + l as usize)
            .ok_or("corrupt attribute in the first command")?;
        if t == SEND_ATTR_PATH {
            let n = u16::try_from(name.len()).map_err(|_| "name too long".to_string())?;
            new_body.extend_from_slice(&t.to_le_bytes());
            new_body.extend_from_slice(&n.to_le_bytes());
            new_body.extend_from_slice(name.as_bytes());
            found = true;
        } else {
            new_body.extend_from_slice(&rest[..4]);
            new_body.extend_from_slice(value);
        }
        rest = &rest[4 + l as usize..];
    }
    if !found {
        return Err("the first command names no subvolume".into());
    }
    let mut command = Vec::with_capacity(10 + new_body.len());
    command.extend_from_slice(&(new_body.len() as u32).to_le_bytes());
    command.extend_from_slice(&cmd.to_le_bytes());
    command.extend_from_slice(&[0; 4]);
    command.extend_from_slice(&new_body);
    let crc = crc32c(0, &command);
    command[6..10].copy_from_slice(&crc.to_le_bytes());
    let mut out = Vec::with_capacity(head.len() + name.len());
    out.extend_from_slice(&head[..17]);
    out.extend_from_slice(&command);
    out.extend_from_slice(&head[27 + len..]);
    Ok(out)
}

/// CRC-32C (Castagnoli) without the usual pre- and post-inversion, as btrfs send computes it
/// (seed 0).
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// `btrfs-stream\0`, the first bytes of every send stream.
pub(super) const SEND_MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// Send stream commands warren looks at.
pub const SEND_CMD_SUBVOL: u16 = 1;
pub const SEND_CMD_SNAPSHOT: u16 = 2;
pub const SEND_CMD_END: u16 = 21;

/// Follows the framing of a btrfs send stream as it passes: a 17-byte header (magic and a
/// version), then commands of a 10-byte header (length, command, crc) and `length` bytes. It
/// tells whether the stream is full or incremental (its first command) and whether it ended
/// properly (an `end` command, then nothing).
#[derive(Debug, Default, Clone)]
pub struct SendStreamCheck {
    head: Vec<u8>,
    cmd: Vec<u8>,
    body_left: u64,
    first: Option<u16>,
    current: Option<u16>,
    commands: u64,
    ended: bool,
}

impl SendStreamCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream's first command, once its header has passed.
    pub fn first_command(&self) -> Option<u16> {
        self.first
    }

    /// True once the first command has passed entirely.
    pub fn first_command_complete(&self) -> bool {
        self.commands > 0
    }

    pub fn feed(&mut self, mut bytes: &[u8]) -> std::result::Result<(), String> {
        while !bytes.is_empty() {
            if self.head.len() < 17 {
                let n = (17 - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                let have = self.head.len().min(13);
                if self.head[..have] != SEND_MAGIC[..have] {
                    return Err("not a btrfs send stream (bad magic)".into());
                }
                if self.head.len() == 17 {
                    let version = u32::from_le_bytes(self.head[13..17].try_into().unwrap());
                    if !(1..=3).contains(&version) {
                        return Err(format!("unsupported btrfs send stream version {version}"));
                    }
                }
                continue;
            }
            if self.ended {
                return Err("data after the end of the btrfs send stream".into());
            }
            if self.body_left > 0 {
                let n = (self.body_left.min(bytes.len() as u64)) as usize;
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                if self.body_left == 0 {
                    self.command_done();
                }
                continue;
            }
            let n = (10 - self.cmd.len()).min(bytes.len());
            self.cmd.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.cmd.len() == 10 {
                let len = u32::from_le_bytes(self.cmd[0..4].try_into().unwrap());
                let cmd = u16::from_le_bytes(self.cmd[4..6].try_into().unwrap());
                self.cmd.clear();
                self.first.get_or_insert(cmd);
                self.current = Some(cmd);
                self.body_left = len.into();
                if len == 0 {
                    self.command_done();
                }
            }
        }
        Ok(())
    }

    fn command_done(&mut self) {
        self.commands += 1;
        if self.current.take() == Some(SEND_CMD_END) {
            self.ended = true;
        }
    }

    /// Ok when the stream ended with its `end` command and nothing was cut.
    pub fn finish(&self) -> std::result::Result<(), String> {
        if self.head.len() < 17 {
            return Err("the stream ended inside its header (truncated)".into());
        }
        if !self.ended {
            return Err("the stream is truncated: it stopped before its end command".into());
        }
        Ok(())
    }
}
