//! Conversions between engine types and peer-protocol messages.

mod get;

pub(crate) use get::{KeyName, KeyRef, OneKeyGet, requested_keys};

use std::sync::Arc;
use std::time::Duration;

use distcache_proto::v1::{self as pb, Code};

use crate::error::Error;
use crate::keyspace::{Expiration, KeySpace};

/// An error as it crosses the wire: the variant becomes a code, the text a message.
pub(crate) fn failure(err: &Error) -> pb::Failure {
    let code = match err {
        Error::NotFound => Code::NotFound,
        Error::KeySpaceNotFound(_) => Code::KeyspaceNotFound,
        Error::Timeout(_) => Code::Timeout,
        Error::RateLimited => Code::RateLimited,
        Error::CircuitOpen => Code::CircuitOpen,
        Error::DataSource(_) => Code::DataSource,
        Error::InvalidArgument(_) => Code::InvalidArgument,
        Error::Stopped => Code::Stopped,
        Error::Unavailable(_) => Code::Unavailable,
    };
    let message = match err {
        // Carry the payload, not the display text, so the far side rebuilds the same error.
        Error::KeySpaceNotFound(name) => name.clone(),
        Error::Timeout(after) => after.as_millis().to_string(),
        Error::DataSource(source) => source.to_string(),
        Error::InvalidArgument(msg) | Error::Unavailable(msg) => msg.clone(),
        _ => String::new(),
    };
    pb::Failure { code: code.into(), message }
}

/// A served get as it crosses the wire.
pub(crate) fn get_outcome(served: Result<crate::serve::Served, Error>) -> pb::GetOutcome {
    let outcome = match served {
        Ok(served) => pb::get_outcome::Outcome::Value(pb::Value {
            value: served.value,
            ttl_ms: served.ttl.map(millis),
            rate: served.rate,
        }),
        Err(err) => pb::get_outcome::Outcome::Failure(failure(&err)),
    };
    pb::GetOutcome { outcome: Some(outcome) }
}

/// The engine error a failure from a peer stands for.
pub(crate) fn error(failure: pb::Failure) -> Error {
    match Code::try_from(failure.code).unwrap_or(Code::Unspecified) {
        Code::NotFound => Error::NotFound,
        Code::KeyspaceNotFound => Error::KeySpaceNotFound(failure.message),
        Code::Timeout => {
            Error::Timeout(Duration::from_millis(failure.message.parse().unwrap_or_default()))
        }
        Code::RateLimited => Error::RateLimited,
        Code::CircuitOpen => Error::CircuitOpen,
        Code::DataSource => Error::DataSource(Arc::new(RemoteError(failure.message))),
        Code::InvalidArgument => Error::InvalidArgument(failure.message),
        Code::Stopped => Error::Unavailable(format!("the peer is stopping: {}", failure.message)),
        Code::Unavailable => Error::Unavailable(failure.message),
        Code::Unspecified => {
            Error::Unavailable(format!("a peer sent an unknown error code: {}", failure.message))
        }
    }
}

/// A data-source error that happened on another node, known by its message.
#[derive(Debug)]
pub(crate) struct RemoteError(String);

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (on the owner)", self.0)
    }
}

impl std::error::Error for RemoteError {}

/// A writer's expiry as the wire carries it; `At` travels as time left, since clocks differ.
pub(crate) fn expiry(expiration: Option<Expiration>) -> Option<pb::Expiry> {
    let kind = match expiration? {
        Expiration::Never => pb::expiry::Kind::Never(true),
        other => pb::expiry::Kind::AfterMs(millis(other.ttl().unwrap_or_default())),
    };
    Some(pb::Expiry { kind: Some(kind) })
}

/// The writer's expiry from the wire.
pub(crate) fn expiration(expiry: Option<pb::Expiry>) -> Option<Expiration> {
    match expiry?.kind? {
        pb::expiry::Kind::Never(_) => Some(Expiration::Never),
        pb::expiry::Kind::AfterMs(ms) => Some(Expiration::After(Duration::from_millis(ms))),
    }
}

/// The settings of a keyspace that travel to peers (everything but its data source).
pub(crate) fn settings(def: &KeySpace) -> pb::KeySpaceSettings {
    let ms = |d: Option<Duration>| d.map(millis);
    pb::KeySpaceSettings {
        name: def.name().to_owned(),
        max_bytes: def.max_bytes(),
        default_ttl_ms: ms(def.default_ttl()),
        negative_ttl_ms: ms(def.negative_ttl()),
        read_timeout_ms: ms(def.read_timeout()),
        write_timeout_ms: ms(def.write_timeout()),
    }
}

/// `def` with the settings a peer sent.
pub(crate) fn apply_settings(def: KeySpace, settings: &pb::KeySpaceSettings) -> KeySpace {
    let d = |ms: Option<u64>| ms.map(Duration::from_millis);
    def.with_settings(
        settings.max_bytes,
        d(settings.default_ttl_ms),
        d(settings.negative_ttl_ms),
        d(settings.read_timeout_ms),
        d(settings.write_timeout_ms),
    )
}

/// Whole milliseconds, rounding a non-zero remainder up so a live value never reads as expired.
pub(crate) fn millis(duration: Duration) -> u64 {
    let ms = duration.as_millis() + u128::from(!duration.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_variant_survives_the_wire() {
        let errors = [
            Error::NotFound,
            Error::KeySpaceNotFound("users".into()),
            Error::Timeout(Duration::from_millis(250)),
            Error::RateLimited,
            Error::CircuitOpen,
            Error::data_source("db down"),
            Error::InvalidArgument("empty key".into()),
            Error::Unavailable("no route".into()),
        ];
        for original in errors {
            let back = error(failure(&original));
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&original));
            match (&original, &back) {
                (Error::KeySpaceNotFound(a), Error::KeySpaceNotFound(b)) => assert_eq!(a, b),
                (Error::Timeout(a), Error::Timeout(b)) => assert_eq!(a, b),
                (Error::DataSource(_), Error::DataSource(b)) => {
                    assert!(b.to_string().contains("db down"));
                }
                _ => {}
            }
        }
        assert!(matches!(
            error(pb::Failure { code: 99, message: "x".into() }),
            Error::Unavailable(_)
        ));
    }

    #[test]
    fn expiries_travel_as_time_left() {
        assert_eq!(expiration(expiry(None)), None);
        assert_eq!(expiration(expiry(Some(Expiration::Never))), Some(Expiration::Never));
        let after = Expiration::After(Duration::from_millis(1500));
        assert_eq!(expiration(expiry(Some(after))), Some(after));
        assert_eq!(millis(Duration::from_micros(1)), 1);
    }
}
