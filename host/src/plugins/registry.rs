//! Which plugin serves what: the override rules between built-ins and the
//! plugin directory, as a pure function over loaded candidates.
//!
//! 1. Names are one namespace across both worlds. A plugin in the directory
//!    replaces every built-in of the same name. Two files declaring the same
//!    name: the first by file name wins, the others are ignored (warned).
//! 2. Keys (packager formats, adapter extensions) are claimed in order:
//!    directory plugins first (by file name), then built-ins; the first
//!    claimant of a key serves it, later ones are warned about.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Embedded in the binary (the crate name).
    Builtin(&'static str),
    /// A file in the plugin directory.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin(name) => write!(f, "built-in {name}"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum World {
    /// `packager`: keys are formats.
    Packager,
    /// `ingest-adapter`: the key is the extension.
    IngestAdapter,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Packager => "packager",
            World::IngestAdapter => "ingest-adapter",
        })
    }
}

/// A loaded plugin offered to the registry.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<T> {
    pub origin: Origin,
    pub world: World,
    pub name: String,
    /// Formats (packager) or the extension (ingest adapter).
    pub keys: Vec<String>,
    pub plugin: T,
}

/// The outcome: who serves which key, and what was set aside.
#[derive(Debug)]
pub(crate) struct Resolved<T> {
    /// Packagers by format.
    pub packagers: BTreeMap<String, T>,
    /// Ingest adapters by extension.
    pub ingest: BTreeMap<String, T>,
    /// The plugins in effect (after name overrides), directory ones first.
    pub active: Vec<Candidate<T>>,
    /// Human-readable notes on what was overridden or ignored.
    pub notes: Vec<String>,
}

/// Applies the override rules. `candidates` may come in any order.
pub(crate) fn resolve<T: Clone>(mut candidates: Vec<Candidate<T>>) -> Resolved<T> {
    let mut notes = Vec::new();
    // Directory plugins first, by path; then built-ins in their given order.
    candidates.sort_by(|a, b| match (&a.origin, &b.origin) {
        (Origin::File(x), Origin::File(y)) => x.cmp(y),
        (Origin::File(_), Origin::Builtin(_)) => std::cmp::Ordering::Less,
        (Origin::Builtin(_), Origin::File(_)) => std::cmp::Ordering::Greater,
        (Origin::Builtin(_), Origin::Builtin(_)) => std::cmp::Ordering::Equal,
    });
    let file_names: HashSet<String> = candidates
        .iter()
        .filter(|c| matches!(c.origin, Origin::File(_)))
        .map(|c| c.name.clone())
        .collect();

    let mut seen_names: BTreeMap<String, Origin> = BTreeMap::new();
    let mut active = Vec::new();
    for c in candidates {
        if matches!(c.origin, Origin::Builtin(_)) && file_names.contains(&c.name) {
            let by = seen_names.get(&c.name).map(ToString::to_string);
            notes.push(format!(
                "{} plugin {:?} overridden by {}",
                c.origin,
                c.name,
                by.unwrap_or_default()
            ));
            continue;
        }
        if let Some(first) = seen_names.get(&c.name) {
            notes.push(format!(
                "{} ignored: plugin name {:?} already taken by {first}",
                c.origin, c.name
            ));
            continue;
        }
        seen_names.insert(c.name.clone(), c.origin.clone());
        active.push(c);
    }

    let mut packagers = BTreeMap::new();
    let mut ingest = BTreeMap::new();
    let mut owners: BTreeMap<(World, String), String> = BTreeMap::new();
    for c in &active {
        let index = match c.world {
            World::Packager => &mut packagers,
            World::IngestAdapter => &mut ingest,
        };
        for key in &c.keys {
            if let Some(owner) = owners.get(&(c.world, key.clone())) {
                notes.push(format!(
                    "{} {:?} of plugin {:?} ({}) ignored: already served by {owner}",
                    match c.world {
                        World::Packager => "format",
                        World::IngestAdapter => "extension",
                    },
                    key,
                    c.name,
                    c.origin
                ));
                continue;
            }
            owners.insert(
                (c.world, key.clone()),
                format!("{:?} ({})", c.name, c.origin),
            );
            index.insert(key.clone(), c.plugin.clone());
        }
    }
    Resolved {
        packagers,
        ingest,
        active,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(name: &str, world: World, keys: &[&str]) -> Candidate<String> {
        Candidate {
            origin: Origin::Builtin("crate"),
            world,
            name: name.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            plugin: format!("builtin:{name}"),
        }
    }

    fn file(path: &str, name: &str, world: World, keys: &[&str]) -> Candidate<String> {
        Candidate {
            origin: Origin::File(PathBuf::from(path)),
            world,
            name: name.into(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            plugin: format!("file:{path}"),
        }
    }

    #[test]
    fn builtins_alone() {
        let r = resolve(vec![
            builtin("hls", World::Packager, &["m3u8-cmaf", "m3u8-aapl"]),
            builtin("rtmp", World::IngestAdapter, &["rtmp"]),
        ]);
        assert_eq!(r.packagers["m3u8-cmaf"], "builtin:hls");
        assert_eq!(r.packagers["m3u8-aapl"], "builtin:hls");
        assert_eq!(r.ingest["rtmp"], "builtin:rtmp");
        assert!(r.notes.is_empty());
    }

    #[test]
    fn file_with_builtin_name_overrides_all_its_keys() {
        let r = resolve(vec![
            builtin("hls", World::Packager, &["m3u8-cmaf", "m3u8-aapl"]),
            file("/p/my-hls.wasm", "hls", World::Packager, &["m3u8-cmaf"]),
        ]);
        assert_eq!(r.packagers["m3u8-cmaf"], "file:/p/my-hls.wasm");
        // The built-in is gone entirely, not merged.
        assert!(!r.packagers.contains_key("m3u8-aapl"));
        assert_eq!(r.active.len(), 1);
        assert_eq!(r.notes.len(), 1);
    }

    #[test]
    fn names_span_both_worlds() {
        let r = resolve(vec![
            builtin("rtmp", World::IngestAdapter, &["rtmp"]),
            file("/p/rtmp.wasm", "rtmp", World::Packager, &["flv"]),
        ]);
        assert!(r.ingest.is_empty());
        assert_eq!(r.packagers["flv"], "file:/p/rtmp.wasm");
    }

    #[test]
    fn directory_plugin_wins_a_format_from_another_builtin() {
        let r = resolve(vec![
            builtin("hls", World::Packager, &["m3u8-cmaf", "m3u8-aapl"]),
            file("/p/cmaf.wasm", "cmaf", World::Packager, &["m3u8-cmaf"]),
        ]);
        assert_eq!(r.packagers["m3u8-cmaf"], "file:/p/cmaf.wasm");
        assert_eq!(r.packagers["m3u8-aapl"], "builtin:hls");
        assert_eq!(r.notes.len(), 1);
    }

    #[test]
    fn duplicate_names_in_directory_first_file_wins() {
        let r = resolve(vec![
            file("/p/b.wasm", "x", World::Packager, &["fb"]),
            file("/p/a.wasm", "x", World::Packager, &["fa"]),
        ]);
        assert_eq!(r.packagers.len(), 1);
        assert_eq!(r.packagers["fa"], "file:/p/a.wasm");
        assert_eq!(r.notes.len(), 1);
    }

    #[test]
    fn format_and_extension_namespaces_are_separate() {
        let r = resolve(vec![
            builtin("a", World::Packager, &["isml"]),
            builtin("b", World::IngestAdapter, &["isml"]),
        ]);
        assert_eq!(r.packagers["isml"], "builtin:a");
        assert_eq!(r.ingest["isml"], "builtin:b");
        assert!(r.notes.is_empty());
    }

    #[test]
    fn key_conflict_between_files_goes_to_first_path() {
        let r = resolve(vec![
            file("/p/z.wasm", "z", World::IngestAdapter, &["srt"]),
            file("/p/m.wasm", "m", World::IngestAdapter, &["srt"]),
        ]);
        assert_eq!(r.ingest["srt"], "file:/p/m.wasm");
        assert_eq!(r.active.len(), 2);
        assert_eq!(r.notes.len(), 1);
    }
}
