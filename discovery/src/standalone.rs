//! [`Standalone`]: a cluster of one.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::{Discovery, DiscoveryError};

/// No peers: the node is a cluster of one.
#[derive(Debug, Default)]
pub struct Standalone {
    stopped: AtomicBool,
}

impl Standalone {
    /// A provider that finds nobody.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Discovery for Standalone {
    async fn discover(&self) -> Result<Vec<String>, DiscoveryError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(DiscoveryError::Shutdown);
        }
        Ok(Vec::new())
    }

    async fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}
