//! The keyspaces of an engine by name: lock-free reads, serialised changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::error::{Error, Result};
use crate::keyspace::KeySpace;
use crate::metrics::Metrics;
use crate::space::{Defaults, Space};

/// Looked up on every get: foldhash, which is cheap on short names.
type Map = HashMap<String, Arc<Space>, foldhash::fast::RandomState>;

/// The live keyspaces of one engine.
#[derive(Debug)]
pub(crate) struct Registry {
    spaces: ArcSwap<Map>,
    /// Serialises changes so two updates cannot lose each other's copy of the map.
    changes: Mutex<()>,
    defaults: Defaults,
    metrics: Metrics,
}

impl Registry {
    pub(crate) fn new(keyspaces: &[KeySpace], defaults: Defaults, metrics: Metrics) -> Self {
        let spaces = keyspaces
            .iter()
            .map(|def| {
                (
                    def.name().to_owned(),
                    Arc::new(Space::new(def.clone(), defaults, metrics.clone())),
                )
            })
            .collect::<Map>();
        Registry {
            spaces: ArcSwap::from_pointee(spaces),
            changes: Mutex::new(()),
            defaults,
            metrics,
        }
    }

    /// Runs `f` on the keyspace called `name` without taking a reference to it.
    pub(crate) fn with<T>(&self, name: &str, f: impl FnOnce(&Arc<Space>) -> T) -> Result<T> {
        match self.spaces.load().get(name) {
            Some(space) => Ok(f(space)),
            None => Err(Error::KeySpaceNotFound(name.to_owned())),
        }
    }

    /// The keyspace called `name`.
    pub(crate) fn get(&self, name: &str) -> Result<Arc<Space>> {
        self.spaces
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::KeySpaceNotFound(name.to_owned()))
    }

    /// Names of all keyspaces, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.spaces.load().keys().cloned().collect();
        names.sort();
        names
    }

    /// A short hash of every keyspace definition, equal on nodes configured alike.
    pub(crate) fn fingerprint(&self) -> String {
        let spaces = self.spaces.load();
        let mut defs: Vec<String> =
            spaces.values().map(|s| s.current().def.fingerprint()).collect();
        defs.sort();
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(defs.join("\n").as_bytes()))
    }

    /// Replaces the definition of an existing keyspace, or adds a new one.
    pub(crate) fn upsert(&self, def: KeySpace) -> Result<()> {
        def.validate()?;
        let _change = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let spaces = self.spaces.load();
        if let Some(space) = spaces.get(def.name()) {
            space.replace(def, self.defaults);
            return Ok(());
        }
        let mut next = Map::clone(&spaces);
        next.insert(
            def.name().to_owned(),
            Arc::new(Space::new(def, self.defaults, self.metrics.clone())),
        );
        self.spaces.store(Arc::new(next));
        Ok(())
    }

    /// Removes the named keyspaces and their data; fails without removing any if one is unknown.
    pub(crate) fn remove(&self, names: &[&str]) -> Result<()> {
        let _change = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Map::clone(&self.spaces.load());
        let mut removed = Vec::with_capacity(names.len());
        for name in names {
            match next.remove(*name) {
                Some(space) => removed.push(space),
                None if removed.iter().any(|s: &Arc<Space>| s.name() == *name) => {}
                None => return Err(Error::KeySpaceNotFound((*name).to_owned())),
            }
        }
        self.spaces.store(Arc::new(next));
        for space in removed {
            space.clear();
        }
        Ok(())
    }
}
