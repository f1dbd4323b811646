//! The data sources a node's keyspaces load from: an HTTP origin ([`HttpSource`]) or a folder
//! of files ([`FilesSource`]).

pub(crate) mod files;
pub(crate) mod http;

use std::sync::Arc;

use distcache_engine::DataSource;

pub use files::FilesSource;
pub use http::HttpSource;

use super::error::NodeError;
use super::keyspace_config::SourceConfig;

/// Builds the source a keyspace config declares; `field` names it in errors and `max_bytes`
/// bounds a value (nothing larger fits the keyspace anyway).
pub(crate) fn build(
    source: &SourceConfig,
    field: &str,
    max_bytes: u64,
) -> Result<Arc<dyn DataSource>, NodeError> {
    Ok(match source {
        SourceConfig::Http(config) => Arc::new(
            HttpSource::build(config, max_bytes)
                .map_err(|(name, message)| NodeError::config(format!("{field}.{name}"), message))?,
        ),
        SourceConfig::Files(config) => {
            Arc::new(FilesSource::new(&config.dir, max_bytes).map_err(|err| {
                NodeError::config(
                    format!("{field}.dir"),
                    format!("{}: {err}", config.dir.display()),
                )
            })?)
        }
    })
}
