//! A client of the QEMU Machine Protocol over any `Read + Write` (in practice the unix socket
//! of `-qmp unix:PATH,server=on,wait=off`).
//!
//! QMP is one JSON object per line each way. On connect QEMU sends a greeting
//! (`{"QMP": {"version": ..., "capabilities": [...]}}`) and accepts nothing but
//! `qmp_capabilities` until it is sent ([`Qmp::handshake`]). Every command then gets exactly one
//! reply, `{"return": ...}` or `{"error": {"class", "desc"}}`, carrying the `id` it was sent
//! with; asynchronous events (`{"event": ..., "data": ..., "timestamp": ...}`) may arrive
//! before it and are kept, in order, for [`Qmp::take_events`].
//!
//! The codec does no I/O of its own beyond the stream it is handed: tests drive it over a
//! scripted transcript (captured from QEMU 7.2) and the shim over the socket.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};

use serde::Deserialize;
use serde_json::{json, Value};

/// Errors of talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("qmp i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("qmp: the connection closed while waiting for {waiting}")]
    Closed { waiting: String },
    #[error("qmp: a line that is not a QMP message ({reason}): {line}")]
    Protocol { line: String, reason: String },
    /// QEMU refused a command.
    #[error("qmp {command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

pub type Result<T, E = QmpError> = std::result::Result<T, E>;

/// QEMU's version from the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// The greeting QEMU sends when a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: Version,
    /// The distribution's package string (`v7.2.0` style or `Debian 1:7.2+dfsg-7+deb12u18`).
    pub package: String,
    pub capabilities: Vec<String>,
}

/// An asynchronous event (`SHUTDOWN`, `STOP`, `RESUME`, `POWERDOWN`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// The answer of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Status {
    /// QEMU's run state: `running`, `paused`, `shutdown`, `prelaunch`, `inmigrate`, ...
    pub status: String,
    pub running: bool,
}

/// A QMP connection.
pub struct Qmp<S: Read + Write> {
    reader: BufReader<S>,
    next_id: u64,
    events: VecDeque<Event>,
}

impl<S: Read + Write> std::fmt::Debug for Qmp<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("next_id", &self.next_id)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<S: Read + Write> Qmp<S> {
    /// Reads the greeting and negotiates capabilities (none are asked for), after which
    /// commands may be sent.
    pub fn handshake(stream: S) -> Result<(Self, Greeting)> {
        let mut q = Qmp {
            reader: BufReader::new(stream),
            next_id: 1,
            events: VecDeque::new(),
        };
        let line = q.read_message("the greeting")?;
        let greeting = parse_greeting(&line)?;
        q.execute("qmp_capabilities", None)?;
        Ok((q, greeting))
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let w = self.reader.get_mut();
        w.write_all(line.as_bytes())?;
        w.flush()?;
        loop {
            let v = self.read_message(command)?;
            if let Some(name) = v.get("event").and_then(Value::as_str) {
                self.events.push_back(Event {
                    name: name.to_string(),
                    data: v.get("data").cloned().unwrap_or(Value::Null),
                });
                continue;
            }
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                return Err(QmpError::Protocol {
                    line: v.to_string(),
                    reason: format!("a reply to another command than {command} (id {id})"),
                });
            }
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: s("class"),
                    desc: s("desc"),
                });
            }
            return Err(QmpError::Protocol {
                line: v.to_string(),
                reason: "neither return, error nor event".into(),
            });
        }
    }

    /// `query-status`.
    pub fn query_status(&mut self) -> Result<Status> {
        let v = self.execute("query-status", None)?;
        serde_json::from_value(v.clone()).map_err(|e| QmpError::Protocol {
            line: v.to_string(),
            reason: e.to_string(),
        })
    }

    /// `system_powerdown`: an ACPI power button press; the guest decides how to shut down.
    pub fn system_powerdown(&mut self) -> Result<()> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// `stop`: pauses the guest's CPUs.
    pub fn stop(&mut self) -> Result<()> {
        self.execute("stop", None).map(drop)
    }

    /// `cont`: resumes the guest's CPUs.
    pub fn cont(&mut self) -> Result<()> {
        self.execute("cont", None).map(drop)
    }

    /// `quit`: QEMU exits at once. A connection that closes before the reply arrives counts
    /// as done, since QEMU may exit before it is flushed.
    pub fn quit(&mut self) -> Result<()> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed { .. }) => Ok(()),
            Err(QmpError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads messages until an event named `name` arrives (events already received count),
    /// keeping the others.
    pub fn wait_event(&mut self, name: &str) -> Result<Event> {
        if let Some(i) = self.events.iter().position(|e| e.name == name) {
            return Ok(self.events.remove(i).expect("index in range"));
        }
        loop {
            let v = self.read_message(&format!("event {name}"))?;
            let Some(n) = v.get("event").and_then(Value::as_str) else {
                return Err(QmpError::Protocol {
                    line: v.to_string(),
                    reason: "a reply while no command was pending".into(),
                });
            };
            let e = Event {
                name: n.to_string(),
                data: v.get("data").cloned().unwrap_or(Value::Null),
            };
            if e.name == name {
                return Ok(e);
            }
            self.events.push_back(e);
        }
    }

    /// The events received so far, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.drain(..).collect()
    }

    /// The stream, for timeouts and shutdown by the caller.
    pub fn stream(&self) -> &S {
        self.reader.get_ref()
    }

    fn read_message(&mut self, waiting: &str) -> Result<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(QmpError::Closed {
                    waiting: waiting.to_string(),
                });
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        let v: Value = serde_json::from_str(line.trim()).map_err(|e| QmpError::Protocol {
            line: line.trim().to_string(),
            reason: e.to_string(),
        })?;
        if !v.is_object() {
            return Err(QmpError::Protocol {
                line: line.trim().to_string(),
                reason: "not a JSON object".into(),
            });
        }
        Ok(v)
    }
}

/// Parses QEMU's greeting line.
pub fn parse_greeting(v: &Value) -> Result<Greeting> {
    let bad = |reason: &str| QmpError::Protocol {
        line: v.to_string(),
        reason: reason.to_string(),
    };
    let qmp = v.get("QMP").ok_or_else(|| bad("no QMP greeting"))?;
    let version = qmp
        .pointer("/version/qemu")
        .cloned()
        .ok_or_else(|| bad("no version.qemu"))?;
    let version: Version = serde_json::from_value(version).map_err(|e| bad(&e.to_string()))?;
    let package = qmp
        .pointer("/version/package")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    let capabilities = qmp
        .get("capabilities")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Greeting {
        version,
        package,
        capabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that replays `input` and records what was written.
    struct Script {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn script(lines: &[&str]) -> Script {
        Script {
            input: Cursor::new(lines.join("\r\n").into_bytes()),
            written: Vec::new(),
        }
    }

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#;

    #[test]
    fn errors_are_typed_and_events_kept() {
        let s = script(&[
            GREETING,
            r#"{"return": {}, "id": 1}"#,
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#,
            r#"{"id": 2, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#,
            "",
        ]);
        let (mut q, g) = Qmp::handshake(s).unwrap();
        assert_eq!(
            g.version,
            Version {
                major: 7,
                minor: 2,
                micro: 22
            }
        );
        assert_eq!(g.capabilities, vec!["oob"]);
        let e = q.execute("nope", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "qmp nope: CommandNotFound: The command nope has not been found"
        );
        let ev = q.take_events();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].name, "STOP");
        assert!(matches!(
            q.query_status().unwrap_err(),
            QmpError::Closed { .. }
        ));
        let written = String::from_utf8(q.stream().written.clone()).unwrap();
        assert_eq!(
            written,
            "{\"execute\":\"qmp_capabilities\",\"id\":1}\n{\"execute\":\"nope\",\"id\":2}\n{\"execute\":\"query-status\",\"id\":3}\n"
        );
    }

    #[test]
    fn a_reply_to_another_id_is_a_protocol_error() {
        let s = script(&[GREETING, r#"{"return": {}, "id": 7}"#]);
        assert!(matches!(
            Qmp::handshake(s).unwrap_err(),
            QmpError::Protocol { .. }
        ));
    }

    #[test]
    fn not_a_greeting() {
        let s = script(&[r#"{"return": {}}"#]);
        assert!(Qmp::handshake(s).is_err());
        let s = script(&["not json"]);
        assert!(matches!(
            Qmp::handshake(s).unwrap_err(),
            QmpError::Protocol { .. }
        ));
    }

    #[test]
    fn quit_tolerates_a_closed_connection() {
        let s = script(&[GREETING, r#"{"return": {}, "id": 1}"#]);
        let (mut q, _) = Qmp::handshake(s).unwrap();
        q.quit().unwrap();
    }
}
