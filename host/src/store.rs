//! Metadata in SQLite (`{data_dir}/sluice.db`): the control plane's records,
//! with schema migrations keyed by `PRAGMA user_version`.
//!
//! Only validated names reach SQL, and every statement binds its values.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("metadata store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not parse.
    #[error("metadata store: corrupt record: {0}")]
    Corrupt(String),
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The schema, one step per version (applied in order, each in a transaction).
const MIGRATIONS: &[&str] = &[
    // 1: channels.
    "CREATE TABLE channels (
        name TEXT PRIMARY KEY NOT NULL,
        ingest_key TEXT NOT NULL,
        input_allow TEXT NOT NULL,
        preview_allow TEXT NOT NULL,
        fragment_ms INTEGER NOT NULL,
        window_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );",
];

/// A channel as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// Name.
    pub name: String,
    /// Ingest key.
    pub key: String,
    /// Input IP allowlist (CIDR); empty = any.
    pub input_allow: Vec<ipnet::IpNet>,
    /// Preview IP allowlist (CIDR); empty = any.
    pub preview_allow: Vec<ipnet::IpNet>,
    /// Fragment grid, ms.
    pub fragment_ms: u32,
    /// Live window, ms.
    pub window_ms: u64,
    /// `stopped` or `running` (transitional states are not stored).
    pub state: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
}

/// The metadata store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating and migrating) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let conn = Connection::open(data_dir.join("sluice.db"))?;
        Self::init(conn)
    }

    /// An in-memory store (tests).
    pub fn memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts a channel; `false` when the name exists.
    pub fn insert_channel(&self, c: &ChannelRecord) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO channels
             (name, ingest_key, input_allow, preview_allow, fragment_ms, window_ms, state, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                c.name,
                c.key,
                to_json(&c.input_allow),
                to_json(&c.preview_allow),
                c.fragment_ms,
                i64::try_from(c.window_ms).unwrap_or(i64::MAX),
                c.state,
                c.created_ms
            ],
        )?;
        Ok(n == 1)
    }

    /// Records a channel's state.
    pub fn set_channel_state(&self, name: &str, state: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE channels SET state = ?2 WHERE name = ?1",
            params![name, state],
        )?;
        Ok(())
    }

    /// Deletes a channel; `false` when absent.
    pub fn delete_channel(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM channels WHERE name = ?1", params![name])?
            == 1)
    }

    /// One channel.
    pub fn channel(&self, name: &str) -> Result<Option<ChannelRecord>> {
        self.conn()
            .query_row(
                &format!("{SELECT_CHANNEL} WHERE name = ?1"),
                params![name],
                row_to_channel,
            )
            .optional()?
            .transpose()
    }

    /// Every channel, by name.
    pub fn channels(&self) -> Result<Vec<ChannelRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT_CHANNEL} ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_channel)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        Ok(out)
    }
}

const SELECT_CHANNEL: &str = "SELECT name, ingest_key, input_allow, preview_allow, fragment_ms, \
                              window_ms, state, created_ms FROM channels";

fn row_to_channel(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ChannelRecord>> {
    let input: String = r.get(2)?;
    let preview: String = r.get(3)?;
    let window: i64 = r.get(5)?;
    Ok((|| {
        Ok(ChannelRecord {
            name: r.get(0)?,
            key: r.get(1)?,
            input_allow: from_json(&input)?,
            preview_allow: from_json(&preview)?,
            fragment_ms: r.get(4)?,
            window_ms: u64::try_from(window).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            state: r.get(6)?,
            created_ms: r.get(7)?,
        })
    })())
}

fn to_json(v: &[ipnet::IpNet]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned())
}

fn from_json(s: &str) -> Result<Vec<ipnet::IpNet>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ChannelRecord {
        ChannelRecord {
            name: name.into(),
            key: "k".into(),
            input_allow: vec!["10.0.0.0/8".parse().expect("cidr")],
            preview_allow: Vec::new(),
            fragment_ms: 2000,
            window_ms: 120_000,
            state: "stopped".into(),
            created_ms: 1,
        }
    }

    #[test]
    fn channels_round_trip_and_survive_reopen() {
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        {
            let s = Store::open(&dir).expect("open");
            assert!(s.insert_channel(&record("b")).expect("insert"));
            assert!(s.insert_channel(&record("a")).expect("insert"));
            assert!(!s.insert_channel(&record("a")).expect("dup"));
            s.set_channel_state("a", "running").expect("state");
        }
        let s = Store::open(&dir).expect("reopen");
        let all = s.channels().expect("list");
        assert_eq!(
            all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(all[0].state, "running");
        assert_eq!(all[1], record("b"));
        assert!(s.delete_channel("a").expect("delete"));
        assert!(!s.delete_channel("a").expect("gone"));
        assert_eq!(s.channel("a").expect("get"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
