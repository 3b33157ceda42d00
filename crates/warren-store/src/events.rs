//! The bounded event log (`events`): each row keeps its [`EventKind`] as JSON beside its kind
//! word and rendered message.

use super::{now_ms, EVENT_LIMIT};
use super::{Result, Store};
use rusqlite::params;
use warren_model::event::EventKind;

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub ts_ms: u64,
    pub workload: Option<String>,
    /// What happened, with its fields; the message is rendered from it.
    pub kind: EventKind,
}

/// An event row's kind: its JSON when it has one, else (an older row, or JSON this version
/// does not know) the legacy pair of kind word and message.
fn event_kind(data: Option<String>, kind: String, message: String) -> EventKind {
    data.and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or(EventKind::Legacy { kind, message })
}

impl Store {
    /// Appends an event and prunes the log past [`EVENT_LIMIT`].
    pub fn add_event(&self, workload: Option<&str>, kind: &EventKind) -> Result<Event> {
        let data = serde_json::to_string(kind)?;
        let c = self.conn();
        let ts = now_ms();
        c.execute(
            "INSERT INTO events (ts_ms, workload, kind, message, data)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ts as i64, workload, kind.category(), kind.to_string(), data],
        )?;
        let id = c.last_insert_rowid();
        if id % 100 == 0 {
            c.execute("DELETE FROM events WHERE id <= ?1", [id - EVENT_LIMIT])?;
        }
        Ok(Event {
            id,
            ts_ms: ts,
            workload: workload.map(str::to_string),
            kind: kind.clone(),
        })
    }

    /// Events with id greater than `after`, optionally for one workload, oldest first, at most
    /// `limit` (the newest ones when more match).
    pub fn events(&self, after: i64, workload: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT id, ts_ms, workload, kind, message, data FROM events
             WHERE id > ?1 AND (?2 IS NULL OR workload = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![after, workload, limit as i64], |r| {
            Ok(Event {
                id: r.get(0)?,
                ts_ms: r.get::<_, i64>(1)? as u64,
                workload: r.get(2)?,
                kind: event_kind(r.get(5)?, r.get(3)?, r.get(4)?),
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }
}
