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
    /// The change breaks a rule of the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// A record the change refers to does not exist (HTTP 404).
    #[error("{0} not found")]
    NotFound(String),
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
    // 2: assets, programs, locators; each channel's incarnation (a new one
    // on reset, so stored keys never collide) and stable track ids; the
    // index of stored fragments and the tracks they belong to.
    "ALTER TABLE channels ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE channel_tracks (
        channel TEXT NOT NULL,
        stream TEXT NOT NULL,
        adapter_track INTEGER NOT NULL,
        track_id INTEGER NOT NULL,
        PRIMARY KEY (channel, stream, adapter_track),
        UNIQUE (channel, track_id)
    );
    CREATE TABLE assets (
        name TEXT PRIMARY KEY NOT NULL,
        created_ms INTEGER NOT NULL,
        channel TEXT,
        manifest_name TEXT,
        window_ms INTEGER,
        incarnation INTEGER,
        fragment_ms INTEGER,
        from_ms INTEGER,
        to_ms INTEGER,
        epoch_ms INTEGER,
        deleting INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE programs (
        channel TEXT NOT NULL,
        name TEXT NOT NULL,
        asset TEXT NOT NULL UNIQUE,
        manifest_name TEXT NOT NULL,
        archive_window_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('created', 'running', 'stopped')),
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        stopped_ms INTEGER,
        PRIMARY KEY (channel, name)
    );
    CREATE TABLE locators (
        id TEXT PRIMARY KEY NOT NULL,
        asset TEXT NOT NULL,
        start_ms INTEGER,
        expiry_ms INTEGER,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE stored_tracks (
        channel TEXT NOT NULL,
        incarnation INTEGER NOT NULL,
        track_id INTEGER NOT NULL,
        info TEXT NOT NULL,
        PRIMARY KEY (channel, incarnation, track_id)
    );
    CREATE TABLE stored_fragments (
        channel TEXT NOT NULL,
        incarnation INTEGER NOT NULL,
        track_id INTEGER NOT NULL,
        start INTEGER NOT NULL,
        duration INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sample_count INTEGER NOT NULL,
        discontinuity INTEGER NOT NULL,
        discontinuity_sequence INTEGER NOT NULL,
        PRIMARY KEY (channel, incarnation, track_id, start)
    ) WITHOUT ROWID;",
    // 3: a channel's configured epoch (wall-clock time of media time zero).
    // and each stored fragment's content checksum (its name across nodes).
    "ALTER TABLE channels ADD COLUMN epoch_ms INTEGER;
    ALTER TABLE stored_fragments ADD COLUMN checksum INTEGER NOT NULL DEFAULT 0;",
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
    /// Names what the channel stores until its next reset (0 = not yet
    /// given one; [`Store::channels`] assigns it).
    pub incarnation: u64,
    /// Configured wall-clock time of media time zero, Unix ms (default:
    /// the clock when the first fragment is cut).
    pub epoch_ms: Option<i64>,
}

/// Where a program is in its one life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramState {
    /// Created, never started.
    Created,
    /// Recording.
    Running,
    /// Ran and stopped; it never runs again.
    Stopped,
}

impl ProgramState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgramState::Created => "created",
            ProgramState::Running => "running",
            ProgramState::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "created" => Ok(ProgramState::Created),
            "running" => Ok(ProgramState::Running),
            "stopped" => Ok(ProgramState::Stopped),
            other => Err(StoreError::Corrupt(format!("program state {other:?}"))),
        }
    }
}

/// A program as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRecord {
    /// Channel it records.
    pub channel: String,
    /// Name, unique in the channel.
    pub name: String,
    /// Asset it records into.
    pub asset: String,
    /// Manifest name in delivery URLs.
    pub manifest_name: String,
    /// Archive window, ms.
    pub archive_window_ms: u64,
    /// State.
    pub state: ProgramState,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// Start time, Unix ms.
    pub started_ms: Option<i64>,
    /// Stop time, Unix ms.
    pub stopped_ms: Option<i64>,
}

/// What an asset holds: the part of one channel incarnation a program
/// recorded. Set when a program is created for the asset; the range when
/// it starts and stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// Channel recorded (its name at the time).
    pub channel: String,
    /// Manifest name in delivery URLs.
    pub manifest_name: String,
    /// Archive window, ms.
    pub window_ms: u64,
    /// Channel incarnation recorded (set at start).
    pub incarnation: Option<u64>,
    /// Fragment grid, ms (set at start).
    pub fragment_ms: Option<u32>,
    /// Media time the recording starts at, ms (set at start).
    pub from_ms: Option<i64>,
    /// Media time it ends at, ms (set at stop; `None` while recording).
    pub to_ms: Option<i64>,
    /// Wall-clock time of media time zero, Unix ms.
    pub epoch_ms: Option<i64>,
}

/// An asset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRecord {
    /// Name.
    pub name: String,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// What it holds, once a program was created for it.
    pub recording: Option<Recording>,
    /// Deletion began (its objects may be partly gone).
    pub deleting: bool,
}

/// A locator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatorRecord {
    /// Id (a name): the first path segment of delivery URLs.
    pub id: String,
    /// Asset published.
    pub asset: String,
    /// Not served before, Unix ms.
    pub start_ms: Option<i64>,
    /// Not served from (410), Unix ms.
    pub expiry_ms: Option<i64>,
    /// Creation time, Unix ms.
    pub created_ms: i64,
}

/// A fragment in the stored index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFragment {
    /// Channel track id.
    pub track: u32,
    /// Timeline entry.
    pub info: sluice_sdk::plugin::Fragment,
    /// Content checksum of the stored object.
    pub checksum: u64,
}

/// The most programs running at once on one channel.
pub const MAX_RUNNING_PROGRAMS: usize = 3;

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
             (name, ingest_key, input_allow, preview_allow, fragment_ms, window_ms, state, created_ms, incarnation, epoch_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                c.name,
                c.key,
                to_json(&c.input_allow),
                to_json(&c.preview_allow),
                c.fragment_ms,
                i64::try_from(c.window_ms).unwrap_or(i64::MAX),
                c.state,
                c.created_ms,
                to_i64(c.incarnation),
                c.epoch_ms
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

    /// Deletes a channel; `false` when absent; a conflict while it has programs.
    pub fn delete_channel(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let programs: i64 = tx.query_row(
            "SELECT count(*) FROM programs WHERE channel = ?1",
            params![name],
            |r| r.get(0),
        )?;
        if programs > 0 {
            return Err(StoreError::Conflict(format!(
                "channel {name} has {programs} program(s): delete them first"
            )));
        }
        let n = tx.execute("DELETE FROM channels WHERE name = ?1", params![name])?;
        tx.execute(
            "DELETE FROM channel_tracks WHERE channel = ?1",
            params![name],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Gives a channel a new incarnation (reset), refused while programs run.
    pub fn reset_channel(&self, name: &str, incarnation: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let running = running_programs(&tx, name)?;
        if running > 0 {
            return Err(StoreError::Conflict(format!(
                "channel {name} has {running} running program(s): stop them before a reset"
            )));
        }
        tx.execute(
            "UPDATE channels SET incarnation = ?2 WHERE name = ?1",
            params![name, to_i64(incarnation)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records a channel's state; stopping is refused while programs run.
    pub fn set_channel_state_checked(&self, name: &str, state: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if state == "stopped" {
            let running = running_programs(&tx, name)?;
            if running > 0 {
                return Err(StoreError::Conflict(format!(
                    "channel {name} has {running} running program(s): stop them first"
                )));
            }
        }
        tx.execute(
            "UPDATE channels SET state = ?2 WHERE name = ?1",
            params![name, state],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The stable track id of (channel, stream, adapter track), assigned
    /// (the next free id, at most `max`) and stored on first use.
    pub fn track_id(
        &self,
        channel: &str,
        stream: &str,
        adapter_track: u32,
        max: u32,
    ) -> Result<Option<u32>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: Option<u32> = tx
            .query_row(
                "SELECT track_id FROM channel_tracks
                 WHERE channel = ?1 AND stream = ?2 AND adapter_track = ?3",
                params![channel, stream, adapter_track],
                |r| r.get(0),
            )
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
        let (count, top): (u32, u32) = tx.query_row(
            "SELECT count(*), coalesce(max(track_id), 0) FROM channel_tracks WHERE channel = ?1",
            params![channel],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if count >= max {
            return Ok(None);
        }
        let id = top + 1;
        tx.execute(
            "INSERT INTO channel_tracks (channel, stream, adapter_track, track_id)
             VALUES (?1, ?2, ?3, ?4)",
            params![channel, stream, adapter_track, id],
        )?;
        tx.commit()?;
        Ok(Some(id))
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

    /// Every channel, by name; one without an incarnation is given one.
    pub fn channels(&self) -> Result<Vec<ChannelRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT_CHANNEL} ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_channel)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r??);
        }
        for c in &mut out {
            if c.incarnation == 0 {
                c.incarnation = new_incarnation();
                conn.execute(
                    "UPDATE channels SET incarnation = ?2 WHERE name = ?1",
                    params![c.name, to_i64(c.incarnation)],
                )?;
            }
        }
        Ok(out)
    }

    /// Creates an asset; a conflict when the name exists.
    pub fn insert_asset(&self, name: &str, created_ms: i64) -> Result<AssetRecord> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO assets (name, created_ms) VALUES (?1, ?2)",
            params![name, created_ms],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("asset {name} exists")));
        }
        Ok(AssetRecord {
            name: name.to_owned(),
            created_ms,
            recording: None,
            deleting: false,
        })
    }

    /// One asset.
    pub fn asset(&self, name: &str) -> Result<Option<AssetRecord>> {
        self.conn()
            .query_row(
                &format!("{SELECT_ASSET} WHERE name = ?1"),
                params![name],
                row_to_asset,
            )
            .optional()?
            .transpose()
    }

    /// Every asset, by name.
    pub fn assets(&self) -> Result<Vec<AssetRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT_ASSET} ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_asset)?;
        rows.map(|r| r?).collect()
    }

    /// Marks an asset for deletion (its objects go next): refused while a
    /// program uses it. Its locators are deleted with it.
    pub fn begin_delete_asset(&self, name: &str) -> Result<AssetRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let asset = tx
            .query_row(
                &format!("{SELECT_ASSET} WHERE name = ?1"),
                params![name],
                row_to_asset,
            )
            .optional()?
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("asset {name}")))?;
        let user: Option<(String, String)> = tx
            .query_row(
                "SELECT channel, name FROM programs WHERE asset = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((channel, program)) = user {
            return Err(StoreError::Conflict(format!(
                "asset {name} is used by program {program} of channel {channel}: delete the program first"
            )));
        }
        tx.execute(
            "UPDATE assets SET deleting = 1 WHERE name = ?1",
            params![name],
        )?;
        tx.execute("DELETE FROM locators WHERE asset = ?1", params![name])?;
        tx.commit()?;
        Ok(AssetRecord {
            deleting: true,
            ..asset
        })
    }

    /// Removes an asset's row once its objects are gone.
    pub fn finish_delete_asset(&self, name: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM assets WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// Creates a program and binds its asset to it: refused when the
    /// program exists, the asset is unknown, or the asset already belongs
    /// to a program or holds a recording.
    pub fn insert_program(&self, p: &ProgramRecord) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM programs WHERE channel = ?1 AND name = ?2",
                params![p.channel, p.name],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if exists {
            return Err(StoreError::Conflict(format!(
                "program {} exists in channel {}",
                p.name, p.channel
            )));
        }
        let asset: Option<(Option<String>, bool)> = tx
            .query_row(
                "SELECT channel, deleting FROM assets WHERE name = ?1",
                params![p.asset],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match asset {
            None | Some((_, true)) => {
                return Err(StoreError::NotFound(format!("asset {}", p.asset)));
            }
            Some((Some(channel), _)) => {
                return Err(StoreError::Conflict(format!(
                    "asset {} already holds a recording of channel {channel}: use a new asset",
                    p.asset
                )));
            }
            Some((None, _)) => {}
        }
        tx.execute(
            "INSERT INTO programs (channel, name, asset, manifest_name, archive_window_ms, state, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                p.channel,
                p.name,
                p.asset,
                p.manifest_name,
                to_i64(p.archive_window_ms),
                p.state.as_str(),
                p.created_ms
            ],
        )?;
        tx.execute(
            "UPDATE assets SET channel = ?2, manifest_name = ?3, window_ms = ?4 WHERE name = ?1",
            params![
                p.asset,
                p.channel,
                p.manifest_name,
                to_i64(p.archive_window_ms)
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// One program.
    pub fn program(&self, channel: &str, name: &str) -> Result<Option<ProgramRecord>> {
        self.conn()
            .query_row(
                &format!("{SELECT_PROGRAM} WHERE channel = ?1 AND name = ?2"),
                params![channel, name],
                row_to_program,
            )
            .optional()?
            .transpose()
    }

    /// The programs of a channel (every channel when `None`), by name.
    pub fn programs(&self, channel: Option<&str>) -> Result<Vec<ProgramRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{SELECT_PROGRAM} WHERE ?1 IS NULL OR channel = ?1 ORDER BY channel, name"
        ))?;
        let rows = stmt.query_map(params![channel], row_to_program)?;
        rows.map(|r| r?).collect()
    }

    /// Starts a program: refused when it ran before, when the channel is
    /// not running, or when [`MAX_RUNNING_PROGRAMS`] already run on it.
    /// Records the recording's start in its asset.
    pub fn start_program(
        &self,
        channel: &str,
        name: &str,
        now_ms: i64,
        start: &RecordingStart,
    ) -> Result<ProgramRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let p = program_in(&tx, channel, name)?;
        match p.state {
            ProgramState::Created => {}
            ProgramState::Running => {
                return Err(StoreError::Conflict(format!("program {name} is running")));
            }
            ProgramState::Stopped => {
                return Err(StoreError::Conflict(format!(
                    "program {name} ran before: a program is never reused, create a new one"
                )));
            }
        }
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM channels WHERE name = ?1",
                params![channel],
                |r| r.get(0),
            )
            .optional()?;
        if state.as_deref() != Some("running") {
            return Err(StoreError::Conflict(format!(
                "channel {channel} is not running: start it first"
            )));
        }
        let running = running_programs(&tx, channel)?;
        if running >= MAX_RUNNING_PROGRAMS {
            return Err(StoreError::Conflict(format!(
                "channel {channel} already runs {running} programs (at most {MAX_RUNNING_PROGRAMS})"
            )));
        }
        tx.execute(
            "UPDATE programs SET state = 'running', started_ms = ?3 WHERE channel = ?1 AND name = ?2",
            params![channel, name, now_ms],
        )?;
        tx.execute(
            "UPDATE assets SET incarnation = ?2, fragment_ms = ?3, from_ms = ?4, epoch_ms = ?5
             WHERE name = ?1",
            params![
                p.asset,
                to_i64(start.incarnation),
                start.fragment_ms,
                start.from_ms,
                start.epoch_ms
            ],
        )?;
        tx.commit()?;
        Ok(ProgramRecord {
            state: ProgramState::Running,
            started_ms: Some(now_ms),
            ..p
        })
    }

    /// Stops a running program; its asset keeps the range `from_ms..to_ms`
    /// (what its archive window held).
    pub fn stop_program(
        &self,
        channel: &str,
        name: &str,
        now_ms: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<ProgramRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let p = program_in(&tx, channel, name)?;
        if p.state != ProgramState::Running {
            return Err(StoreError::Conflict(format!(
                "program {name} is {}, not running",
                p.state.as_str()
            )));
        }
        tx.execute(
            "UPDATE programs SET state = 'stopped', stopped_ms = ?3 WHERE channel = ?1 AND name = ?2",
            params![channel, name, now_ms],
        )?;
        tx.execute(
            "UPDATE assets SET from_ms = ?2, to_ms = ?3 WHERE name = ?1",
            params![p.asset, from_ms, to_ms],
        )?;
        tx.commit()?;
        Ok(ProgramRecord {
            state: ProgramState::Stopped,
            stopped_ms: Some(now_ms),
            ..p
        })
    }

    /// Deletes a program that is not running. Its asset keeps what was
    /// recorded (and plays on demand); an asset never recorded into is
    /// released for another program.
    pub fn delete_program(&self, channel: &str, name: &str) -> Result<ProgramRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let p = program_in(&tx, channel, name)?;
        if p.state == ProgramState::Running {
            return Err(StoreError::Conflict(format!(
                "program {name} is running: stop it first"
            )));
        }
        tx.execute(
            "DELETE FROM programs WHERE channel = ?1 AND name = ?2",
            params![channel, name],
        )?;
        if p.state == ProgramState::Created {
            tx.execute(
                "UPDATE assets SET channel = NULL, manifest_name = NULL, window_ms = NULL
                 WHERE name = ?1",
                params![p.asset],
            )?;
        }
        tx.commit()?;
        Ok(p)
    }

    /// Creates a locator: refused when the id exists or the asset is unknown.
    pub fn insert_locator(&self, l: &LocatorRecord) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let asset: Option<bool> = tx
            .query_row(
                "SELECT deleting FROM assets WHERE name = ?1",
                params![l.asset],
                |r| r.get(0),
            )
            .optional()?;
        if asset != Some(false) {
            return Err(StoreError::NotFound(format!("asset {}", l.asset)));
        }
        let n = tx.execute(
            "INSERT OR IGNORE INTO locators (id, asset, start_ms, expiry_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![l.id, l.asset, l.start_ms, l.expiry_ms, l.created_ms],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("locator {} exists", l.id)));
        }
        tx.commit()?;
        Ok(())
    }

    /// Every locator, by id.
    pub fn locators(&self) -> Result<Vec<LocatorRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, asset, start_ms, expiry_ms, created_ms FROM locators ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(LocatorRecord {
                id: r.get(0)?,
                asset: r.get(1)?,
                start_ms: r.get(2)?,
                expiry_ms: r.get(3)?,
                created_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a locator; `false` when absent.
    pub fn delete_locator(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM locators WHERE id = ?1", params![id])?
            == 1)
    }

    /// Records an asset's epoch (wall-clock time of media time zero).
    pub fn set_asset_epoch(&self, asset: &str, epoch_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE assets SET epoch_ms = ?2 WHERE name = ?1",
            params![asset, epoch_ms],
        )?;
        Ok(())
    }

    /// Stores a track description of a channel incarnation.
    pub fn put_stored_track(
        &self,
        channel: &str,
        incarnation: u64,
        id: u32,
        info: &str,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO stored_tracks (channel, incarnation, track_id, info)
             VALUES (?1, ?2, ?3, ?4)",
            params![channel, to_i64(incarnation), id, info],
        )?;
        Ok(())
    }

    /// The stored track descriptions of a channel incarnation, by id.
    pub fn stored_tracks(&self, channel: &str, incarnation: u64) -> Result<Vec<(u32, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT track_id, info FROM stored_tracks
             WHERE channel = ?1 AND incarnation = ?2 ORDER BY track_id",
        )?;
        let rows = stmt.query_map(params![channel, to_i64(incarnation)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds a fragment to the stored index (after its object is written).
    pub fn put_stored_fragment(
        &self,
        channel: &str,
        incarnation: u64,
        f: &StoredFragment,
    ) -> Result<()> {
        let i = &f.info;
        self.conn().execute(
            "INSERT OR REPLACE INTO stored_fragments
             (channel, incarnation, track_id, start, duration, size, sample_count,
              discontinuity, discontinuity_sequence, checksum)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                channel,
                to_i64(incarnation),
                f.track,
                to_i64(i.start),
                to_i64(i.duration),
                i.size,
                i.sample_count,
                i.discontinuity,
                i.discontinuity_sequence,
                f.checksum as i64
            ],
        )?;
        Ok(())
    }

    /// Removes fragments from the stored index (before their objects go).
    pub fn delete_stored_fragments(
        &self,
        channel: &str,
        incarnation: u64,
        keys: &[(u32, u64)],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM stored_fragments
                 WHERE channel = ?1 AND incarnation = ?2 AND track_id = ?3 AND start = ?4",
            )?;
            for (track, start) in keys {
                stmt.execute(params![channel, to_i64(incarnation), track, to_i64(*start)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets a channel incarnation's index and tracks.
    pub fn delete_stored_incarnation(&self, channel: &str, incarnation: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM stored_fragments WHERE channel = ?1 AND incarnation = ?2",
            params![channel, to_i64(incarnation)],
        )?;
        tx.execute(
            "DELETE FROM stored_tracks WHERE channel = ?1 AND incarnation = ?2",
            params![channel, to_i64(incarnation)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The stored index of a channel incarnation, by track and start.
    pub fn stored_fragments(&self, channel: &str, incarnation: u64) -> Result<Vec<StoredFragment>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT track_id, start, duration, size, sample_count, discontinuity,
                    discontinuity_sequence, checksum
             FROM stored_fragments WHERE channel = ?1 AND incarnation = ?2
             ORDER BY track_id, start",
        )?;
        let rows = stmt.query_map(params![channel, to_i64(incarnation)], |r| {
            let start: i64 = r.get(1)?;
            let duration: i64 = r.get(2)?;
            Ok(StoredFragment {
                track: r.get(0)?,
                info: sluice_sdk::plugin::Fragment {
                    start: u64::try_from(start).unwrap_or(0),
                    duration: u64::try_from(duration).unwrap_or(0),
                    size: r.get(3)?,
                    sample_count: r.get(4)?,
                    discontinuity: r.get(5)?,
                    discontinuity_sequence: r.get(6)?,
                },
                checksum: r.get::<_, i64>(7)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// What a program start records in its asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingStart {
    /// Channel incarnation recorded.
    pub incarnation: u64,
    /// Fragment grid, ms.
    pub fragment_ms: u32,
    /// Media time the recording starts at, ms.
    pub from_ms: i64,
    /// Wall-clock time of media time zero, if known yet.
    pub epoch_ms: Option<i64>,
}

/// A new channel incarnation: 63 random bits (stored as a SQLite integer).
pub fn new_incarnation() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // No randomness: the clock still makes collisions unlikely.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        return (now >> 1) | 1;
    }
    (u64::from_le_bytes(b) >> 1) | 1
}

/// A program inside a transaction; `NotFound` when absent.
fn program_in(tx: &rusqlite::Transaction<'_>, channel: &str, name: &str) -> Result<ProgramRecord> {
    tx.query_row(
        &format!("{SELECT_PROGRAM} WHERE channel = ?1 AND name = ?2"),
        params![channel, name],
        row_to_program,
    )
    .optional()?
    .transpose()?
    .ok_or_else(|| StoreError::NotFound(format!("program {name}")))
}

fn running_programs(tx: &rusqlite::Transaction<'_>, channel: &str) -> Result<usize> {
    let n: i64 = tx.query_row(
        "SELECT count(*) FROM programs WHERE channel = ?1 AND state = 'running'",
        params![channel],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Stored integers are SQLite's signed 64 bits; larger values saturate.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const SELECT_ASSET: &str = "SELECT name, created_ms, channel, manifest_name, window_ms, \
                            incarnation, fragment_ms, from_ms, to_ms, epoch_ms, deleting FROM assets";

fn row_to_asset(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AssetRecord>> {
    let channel: Option<String> = r.get(2)?;
    let manifest: Option<String> = r.get(3)?;
    let window: Option<i64> = r.get(4)?;
    let incarnation: Option<i64> = r.get(5)?;
    let recording = match (channel, manifest, window) {
        (Some(channel), Some(manifest_name), Some(window)) => Some(Recording {
            channel,
            manifest_name,
            window_ms: u64::try_from(window).unwrap_or(0),
            incarnation: incarnation.and_then(|i| u64::try_from(i).ok()),
            fragment_ms: r.get(6)?,
            from_ms: r.get(7)?,
            to_ms: r.get(8)?,
            epoch_ms: r.get(9)?,
        }),
        _ => None,
    };
    Ok(Ok(AssetRecord {
        name: r.get(0)?,
        created_ms: r.get(1)?,
        recording,
        deleting: r.get(10)?,
    }))
}

const SELECT_PROGRAM: &str = "SELECT channel, name, asset, manifest_name, archive_window_ms, \
                              state, created_ms, started_ms, stopped_ms FROM programs";

fn row_to_program(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ProgramRecord>> {
    let window: i64 = r.get(4)?;
    let state: String = r.get(5)?;
    let state = match ProgramState::parse(&state) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(ProgramRecord {
        channel: r.get(0)?,
        name: r.get(1)?,
        asset: r.get(2)?,
        manifest_name: r.get(3)?,
        archive_window_ms: u64::try_from(window).unwrap_or(0),
        state,
        created_ms: r.get(6)?,
        started_ms: r.get(7)?,
        stopped_ms: r.get(8)?,
    }))
}

const SELECT_CHANNEL: &str = "SELECT name, ingest_key, input_allow, preview_allow, fragment_ms, \
                              window_ms, state, created_ms, incarnation, epoch_ms FROM channels";

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
            incarnation: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            epoch_ms: r.get(9)?,
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
            incarnation: 7,
            epoch_ms: Some(1_700_000_000_000),
        }
    }

    #[test]
    fn a_version_1_database_migrates_keeping_its_channels() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("sluice-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        {
            let conn = Connection::open(dir.join("sluice.db"))?;
            conn.execute_batch(MIGRATIONS[0])?;
            conn.pragma_update(None, "user_version", 1)?;
            conn.execute(
                "INSERT INTO channels VALUES ('old', 'k', '[]', '[]', 2000, 120000, 'running', 5)",
                [],
            )?;
        }
        let s = Store::open(&dir)?;
        let version: i64 = s
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        assert_eq!(version, MIGRATIONS.len() as i64);
        let all = s.channels()?;
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].name.as_str(), all[0].state.as_str()),
            ("old", "running")
        );
        // Given an incarnation once, kept after.
        assert_ne!(all[0].incarnation, 0);
        assert_eq!(s.channels()?[0].incarnation, all[0].incarnation);
        s.insert_asset("a", 1)?;
        assert!(matches!(
            s.insert_asset("a", 1),
            Err(StoreError::Conflict(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
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
