//! The engine and everything shared by all plugins of one host: wasmtime
//! configuration, the epoch ticker, the linkers, component loading and the
//! mapping of wasmtime failures to [`PluginError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::component::{Component, Linker, Resource};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
};

use super::PluginConfig;
use super::PluginError;
use super::bindings::{ingest, packager};
use super::cache;
use super::registry::World;
use super::state::PluginState;

/// Epoch ticks per call deadline: the deadline is enforced to within a
/// tenth of itself.
const TICKS_PER_DEADLINE: u64 = 10;
/// Bounds of the ticker's period.
const TICK_MIN: Duration = Duration::from_millis(1);
const TICK_MAX: Duration = Duration::from_millis(50);

/// Core instances one component may create. A Rust `wasm32-wasip2`
/// component has its main module, the WASI adapter and a few shim and
/// fix-up modules; this leaves room for plugins in other languages.
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Linear memories one component may define (a Rust plugin defines one).
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables one component may define (a Rust plugin: its own and the shim's).
const TABLES_PER_COMPONENT: u32 = 8;
/// Elements per table.
const TABLE_ELEMENTS: usize = 20_000;
/// Dirty bytes of a linear memory reset with `memset` (and kept resident)
/// when an instance's slot returns to the pool, where Linux's `PAGEMAP_SCAN`
/// finds the dirty pages (6.7+); the rest is `madvise`d away. Without the
/// scan wasmtime would `memset` the lowest addresses, which a Rust plugin
/// never touches (its stack grows down from 1 MiB): then nothing is kept.
/// Bench (testbed, per request): madvise only 18.5 µs, scan + 1 MiB 10.6 µs
/// (the same with 8 MiB: only dirty pages are touched). 8 MiB covers what a
/// 25 h DVR manifest dirties, so it does not re-fault its pages on every
/// request: HLS 5.7 → 4.7 ms, DASH 7.6 → 5.4 ms (`cargo bench -p
/// sluice-bench -- dvr`). The price is memory: a slot keeps what it
/// dirtied, up to 8 MiB, so at most `max_instances` × 8 MiB in all.
const MEMORY_KEEP_RESIDENT: usize = 8 << 20;
/// Bytes of each table reset with `memset` instead of `madvise` (tables are
/// used from their start): 24 µs per request with 0, 18.5 µs with 64 KiB.
const TABLE_KEEP_RESIDENT: usize = 64 * 1024;

/// The WIT interface version this host implements.
pub(crate) const WIT_VERSION: &str = "0.1.0";

/// Engine, linkers and limits shared by every plugin of a host.
pub(crate) struct Runtime {
    pub engine: Engine,
    packager_linker: Linker<PluginState>,
    ingest_linker: Linker<PluginState>,
    /// Deadline of one call, in milliseconds (for messages).
    pub deadline_ms: u64,
    /// Deadline of one call, in epoch ticks.
    deadline_ticks: u64,
    /// Advances the epoch while calls run.
    ticker: Ticker,
    /// Linear memory cap, in bytes.
    memory_cap: usize,
    cache_dir: Option<PathBuf>,
}

/// The wasmtime configuration for `config`.
///
/// - Cranelift, component model, epoch interruption (the deadline).
/// - The pooling allocator: every instance slot (memory, tables, instance
///   state) is reserved once, so instantiation is a slot pick plus a
///   copy-on-write mapping of the initial memory image (kept mapped when the
///   slot is reused by the same plugin), and teardown a reset of the dirty
///   pages (`PAGEMAP_SCAN` + `memset`, see [`MEMORY_KEEP_RESIDENT`]).
/// - `max_memory_size` = the memory cap (the per-store limiter enforces it
///   too and records the hit); 4 GiB reservations + guard pages stay the
///   default so Cranelift elides bounds checks.
pub(crate) fn engine_config(config: &PluginConfig) -> Config {
    let instances = config.max_instances.max(1);
    let memory_cap = memory_cap_bytes(config);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances)
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(0)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_tables_per_module(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .max_memory_size(memory_cap)
        .table_keep_resident(TABLE_KEEP_RESIDENT);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT);
    } else {
        pool.pagemap_scan(Enabled::No)
            .linear_memory_keep_resident(0);
    }
    let mut c = Config::new();
    c.strategy(wasmtime::Strategy::Cranelift)
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

fn memory_cap_bytes(config: &PluginConfig) -> usize {
    (config.memory_mib.max(1) as usize) << 20
}

impl Runtime {
    /// Builds the engine, the linkers and starts the epoch ticker.
    pub fn new(
        config: &PluginConfig,
        cache_dir: Option<PathBuf>,
    ) -> Result<Arc<Self>, PluginError> {
        let engine = Engine::new(&engine_config(config))
            .map_err(|e| PluginError::Host(format!("cannot create the wasm engine: {e:#}")))?;
        let packager_linker = linker(&engine, World::Packager)
            .map_err(|e| PluginError::Host(format!("cannot link the packager world: {e:#}")))?;
        let ingest_linker = linker(&engine, World::IngestAdapter)
            .map_err(|e| PluginError::Host(format!("cannot link the ingest world: {e:#}")))?;
        // A tenth of the deadline per tick (the default 250 ms: 25 ms).
        let tick = Duration::from_millis(config.deadline_ms.div_ceil(TICKS_PER_DEADLINE))
            .clamp(TICK_MIN, TICK_MAX);
        let ticker = Ticker::start(&engine, tick)
            .map_err(|e| PluginError::Host(format!("cannot start the epoch thread: {e}")))?;
        let tick_ms = tick.as_millis() as u64;
        Ok(Arc::new(Runtime {
            engine,
            packager_linker,
            ingest_linker,
            deadline_ms: config.deadline_ms,
            // +1: the next tick may come right after the deadline is set.
            deadline_ticks: config.deadline_ms.div_ceil(tick_ms).max(1) + 1,
            ticker,
            memory_cap: memory_cap_bytes(config),
            cache_dir,
        }))
    }

    /// A fresh store for one call (packager) or one session (ingest).
    pub fn store(&self, name: &Arc<str>) -> Store<PluginState> {
        let mut store = Store::new(
            &self.engine,
            PluginState::new(name.clone(), self.memory_cap),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// Re-arms the deadline and clears the memory flag before a call; the
    /// epoch runs while the returned guard lives.
    pub fn arm(&self, store: &mut Store<PluginState>) -> Busy<'_> {
        let busy = self.busy();
        store.set_epoch_deadline(self.deadline_ticks);
        store.data_mut().limiter.hit = false;
        busy
    }

    /// Whether the epoch thread is parked (no call for a while).
    pub fn idle(&self) -> bool {
        self.ticker.shared.parked.load(Ordering::Acquire)
    }

    /// Keeps the epoch ticking while the guard lives: hold it across every
    /// instantiation and call, or the deadline never comes.
    pub fn busy(&self) -> Busy<'_> {
        self.ticker.enter()
    }

    /// Compiles (or loads from the cache) and checks one component.
    pub fn load(&self, label: &str, wasm: &[u8]) -> Result<Loaded, PluginError> {
        let load_err = |message: String| PluginError::Load {
            path: label.to_owned(),
            message,
        };
        match wasm.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(load_err(
                    "a core wasm module, not a component (build the plugin for wasm32-wasip2)"
                        .into(),
                ));
            }
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(load_err("not a WebAssembly file".into())),
        }
        let component = cache::component(&self.engine, self.cache_dir.as_deref(), wasm)
            .map_err(|e| load_err(format!("not a usable component: {}", one_line(&e))))?;
        let world = self.world_of(&component).map_err(load_err)?;
        let linker = match world {
            World::Packager => &self.packager_linker,
            World::IngestAdapter => &self.ingest_linker,
        };
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            load_err(format!(
                "imports what the host does not provide: {}",
                one_line(&e)
            ))
        })?;
        let name: Arc<str> = Arc::from(label);
        match world {
            World::Packager => {
                let pre = packager::PackagerPre::new(pre)
                    .map_err(|e| load_err(format!("bad packager exports: {}", one_line(&e))))?;
                let _busy = self.busy();
                let mut store = self.store(&name);
                let info = pre
                    .instantiate(&mut store)
                    .and_then(|b| b.sluice_plugin_packaging().call_info(&mut store))
                    .map_err(|e| load_err(self.failure(&name, e, &mut store).to_string()))?;
                store.data_mut().flush_output();
                Ok(Loaded::Packager { pre, info })
            }
            World::IngestAdapter => {
                let pre = ingest::IngestAdapterPre::new(pre).map_err(|e| {
                    load_err(format!("bad ingest-adapter exports: {}", one_line(&e)))
                })?;
                let _busy = self.busy();
                let mut store = self.store(&name);
                let info = pre
                    .instantiate(&mut store)
                    .and_then(|b| b.sluice_plugin_ingest().call_info(&mut store))
                    .map_err(|e| load_err(self.failure(&name, e, &mut store).to_string()))?;
                store.data_mut().flush_output();
                Ok(Loaded::Ingest { pre, info })
            }
        }
    }

    /// Which world `component` implements, from its exports.
    fn world_of(&self, component: &Component) -> Result<World, String> {
        let ty = component.component_type();
        let mut worlds = Vec::new();
        let mut others = Vec::new();
        for (name, _) in ty.exports(&self.engine) {
            let (iface, version) = name.split_once('@').unwrap_or((name, ""));
            let world = match iface {
                "sluice:plugin/packaging" => World::Packager,
                "sluice:plugin/ingest" => World::IngestAdapter,
                _ => continue,
            };
            if version != WIT_VERSION {
                others.push(format!(
                    "{name} (this host implements sluice:plugin@{WIT_VERSION})"
                ));
                continue;
            }
            worlds.push(world);
        }
        match worlds.as_slice() {
            [world] => Ok(*world),
            [] if !others.is_empty() => Err(format!("unsupported version: {}", others.join(", "))),
            [] => Err(format!(
                "exports neither sluice:plugin/packaging@{WIT_VERSION} (packager world) nor \
                 sluice:plugin/ingest@{WIT_VERSION} (ingest-adapter world)"
            )),
            _ => Err("exports both worlds; a plugin implements one".to_owned()),
        }
    }

    /// Maps a failed instantiation or call to the error the caller sees,
    /// logging what the plugin wrote to stdout/stderr.
    pub fn failure(
        &self,
        name: &str,
        err: wasmtime::Error,
        store: &mut Store<PluginState>,
    ) -> PluginError {
        let output = store.data().output.take();
        let trap = err.downcast_ref::<Trap>().copied();
        if trap == Some(Trap::Interrupt) {
            if !output.is_empty() {
                tracing::warn!(plugin = name, output = %output.trim_end(), "plugin output before its deadline");
            }
            return PluginError::Deadline {
                plugin: name.to_owned(),
                deadline_ms: self.deadline_ms,
            };
        }
        if store.data().limiter.hit {
            if !output.is_empty() {
                tracing::warn!(plugin = name, output = %output.trim_end(), "plugin output before its memory cap");
            }
            return PluginError::Memory {
                plugin: name.to_owned(),
            };
        }
        if trap.is_none() && is_pool_exhausted(&err) {
            return PluginError::Host(format!("no instance for plugin {name}: {err:#}"));
        }
        tracing::debug!(plugin = name, error = ?err, "plugin failed");
        // The cause without the wasm backtrace context (plugins are
        // stripped: its frames are bare function indices; the debug line
        // above has them).
        let mut message = err.root_cause().to_string();
        if !output.is_empty() {
            message.push_str("\nplugin output:\n");
            message.push_str(output.trim());
        }
        PluginError::Trap {
            plugin: name.to_owned(),
            message,
        }
    }
}

/// An error and its causes on one line (for logs and `plugin check`).
fn one_line(err: &wasmtime::Error) -> String {
    format!("{err:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether instantiation failed because the pool had no free slot.
fn is_pool_exhausted(err: &wasmtime::Error) -> bool {
    err.chain()
        .any(|e| e.is::<wasmtime::PoolConcurrencyLimitError>())
}

/// What loading a component produced.
pub(crate) enum Loaded {
    /// A packager with its declaration.
    Packager {
        pre: packager::PackagerPre<PluginState>,
        info: packager::exports::sluice::plugin::packaging::PackagerInfo,
    },
    /// An ingest adapter with its declaration.
    Ingest {
        pre: ingest::IngestAdapterPre<PluginState>,
        info: ingest::exports::sluice::plugin::ingest::AdapterInfo,
    },
}

/// The linker of one world: WASI p2 (granting nothing, see
/// [`PluginState`]), the shared `log` import and, for packagers,
/// `presentation`.
fn linker(engine: &Engine, world: World) -> wasmtime::Result<Linker<PluginState>> {
    use wasmtime::component::HasSelf;
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    forbid_blocking(&mut linker)?;
    match world {
        World::Packager => {
            packager::Packager::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
        }
        World::IngestAdapter => {
            ingest::IngestAdapter::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)?
        }
    }
    Ok(linker)
}

/// Replaces the WASI functions that wait (`poll`, `pollable.block`) with
/// traps. The epoch deadline interrupts only Wasm code, not a host function
/// sleeping on the plugin's behalf; plugins are pure functions with nothing
/// to wait for (their stdout/stderr never block).
fn forbid_blocking(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::DynPollable;
    /// The `wasi:io` version `wasmtime-wasi` links; imports of any `0.2.x`
    /// resolve to it.
    const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";
    fn refuse_poll(
        _: wasmtime::StoreContextMut<'_, PluginState>,
        _: (Vec<Resource<DynPollable>>,),
    ) -> wasmtime::Result<(Vec<u32>,)> {
        wasmtime::bail!("plugins may not block (wasi:io/poll.poll)")
    }
    fn refuse_block(
        _: wasmtime::StoreContextMut<'_, PluginState>,
        _: (Resource<DynPollable>,),
    ) -> wasmtime::Result<()> {
        wasmtime::bail!("plugins may not block (wasi:io/poll.pollable.block)")
    }
    // Without shadowing, defining an existing name fails: proof that the
    // name is the one wasmtime-wasi linked (after an upgrade that changes
    // the version this errors instead of silently adding a dead instance).
    linker.allow_shadowing(false);
    if linker
        .instance(WASI_IO_POLL)?
        .func_wrap("poll", refuse_poll)
        .is_ok()
    {
        wasmtime::bail!("wasmtime-wasi no longer links {WASI_IO_POLL}; update WASI_IO_POLL");
    }
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap("poll", refuse_poll)?;
    poll.func_wrap("[method]pollable.block", refuse_block)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Ticks without a call after which the ticker parks.
const LINGER_TICKS: u32 = 40;

/// The thread that advances the engine's epoch: once per tick while calls
/// come, parked once none has run for [`LINGER_TICKS`] ticks, so an idle
/// host does not wake up every tick, and a busy one does not pay a thread
/// wake-up per call.
struct Ticker {
    shared: Arc<TickerShared>,
    thread: Thread,
}

struct TickerShared {
    /// Calls (and instantiations) running now.
    in_flight: AtomicUsize,
    /// Whether a call started since the ticker last looked.
    recent: AtomicBool,
    /// Whether the ticker is parked.
    parked: AtomicBool,
}

/// A call in flight (see [`Runtime::busy`]).
pub(crate) struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl Ticker {
    /// Starts the thread; it ends once the engine is dropped and the
    /// runtime with it.
    fn start(engine: &Engine, tick: Duration) -> std::io::Result<Ticker> {
        let weak = engine.weak();
        let shared = Arc::new(TickerShared {
            in_flight: AtomicUsize::new(0),
            recent: AtomicBool::new(false),
            parked: AtomicBool::new(false),
        });
        let seen = shared.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-plugin-epoch".into())
            .spawn(move || {
                let mut quiet = 0u32;
                loop {
                    let called = seen.recent.swap(false, Ordering::AcqRel);
                    if called || seen.in_flight.load(Ordering::Acquire) > 0 {
                        quiet = 0;
                    } else {
                        quiet = quiet.saturating_add(1);
                    }
                    if quiet > LINGER_TICKS {
                        // `enter` unparks when the first call starts; an
                        // unpark between the load and the park makes the
                        // park return at once.
                        seen.parked.store(true, Ordering::Release);
                        std::thread::park();
                        seen.parked.store(false, Ordering::Release);
                        quiet = 0;
                    } else {
                        std::thread::sleep(tick);
                    }
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(Ticker {
            shared,
            thread: handle.thread().clone(),
        })
    }

    fn enter(&self) -> Busy<'_> {
        self.shared.recent.store(true, Ordering::Release);
        if self.shared.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            // Cheap unless the thread is parked: then it wakes it.
            self.thread.unpark();
        }
        Busy(&self.shared.in_flight)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Wakes a parked ticker so that it sees the engine go.
        self.ticker.thread.unpark();
    }
}
