//! A data source that reads each key from a file under a folder.
//!
//! The key is a relative path (`reports/2024.csv`). Keys that could leave the folder are
//! refused with an error, never read: absolute paths, `..` or `.` segments, empty segments,
//! backslashes and NUL bytes, and paths whose symlinks resolve outside the folder. A missing
//! file (or a folder) is [`FetchError::NotFound`].

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use distcache_engine::{DataSource, FetchError, async_trait};

/// Loads values from the files of one folder.
#[derive(Debug, Clone)]
pub struct FilesSource {
    dir: PathBuf,
    max_bytes: u64,
}

impl FilesSource {
    /// A source reading under `dir` (which must exist), refusing files above `max_bytes`.
    pub fn new(dir: impl AsRef<Path>, max_bytes: u64) -> std::io::Result<Self> {
        let dir = std::fs::canonicalize(dir.as_ref())?;
        if !dir.is_dir() {
            return Err(std::io::Error::new(ErrorKind::InvalidInput, "not a directory"));
        }
        Ok(FilesSource { dir, max_bytes })
    }

    /// The path `key` names under the folder, or why the key is refused.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, FetchError> {
        let refuse = |why: &str| {
            FetchError::failed(format!(
                "key {key:?} is refused: {why}; keys are relative paths inside the folder"
            ))
        };
        if key.contains('\\') || key.contains('\0') {
            return Err(refuse("it holds a backslash or NUL"));
        }
        if key.starts_with('/') {
            return Err(refuse("it is an absolute path"));
        }
        if key.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
            return Err(refuse("it has an empty, `.` or `..` segment"));
        }
        let relative = Path::new(key);
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refuse("it is not a plain relative path"));
        }
        Ok(self.dir.join(relative))
    }
}

#[async_trait]
impl DataSource for FilesSource {
    async fn fetch(&self, key: &str) -> Result<Bytes, FetchError> {
        let path = self.path_of(key)?;
        let failed = |err: std::io::Error| FetchError::failed(format!("{}: {err}", path.display()));
        let real = match tokio::fs::canonicalize(&path).await {
            Ok(real) => real,
            Err(err) if err.kind() == ErrorKind::NotFound => return Err(FetchError::NotFound),
            Err(err) if err.kind() == ErrorKind::NotADirectory => return Err(FetchError::NotFound),
            Err(err) => return Err(failed(err)),
        };
        if !real.starts_with(&self.dir) {
            return Err(FetchError::failed(format!(
                "key {key:?} is refused: it resolves outside the folder (symlink)"
            )));
        }
        let metadata = tokio::fs::metadata(&real).await.map_err(failed)?;
        if !metadata.is_file() {
            return Err(FetchError::NotFound);
        }
        if metadata.len() > self.max_bytes {
            return Err(FetchError::failed(format!(
                "{} has {} bytes, more than the keyspace's {} byte budget",
                path.display(),
                metadata.len(),
                self.max_bytes
            )));
        }
        match tokio::fs::read(&real).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(err) if err.kind() == ErrorKind::NotFound => Err(FetchError::NotFound),
            Err(err) => Err(failed(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> (tempfile::TempDir, FilesSource) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("data/sub")).unwrap();
        std::fs::write(root.path().join("data/a.txt"), "alpha").unwrap();
        std::fs::write(root.path().join("data/sub/b.txt"), "beta").unwrap();
        std::fs::write(root.path().join("secret.txt"), "secret").unwrap();
        let source = FilesSource::new(root.path().join("data"), 1 << 20).unwrap();
        (root, source)
    }

    #[tokio::test]
    async fn reads_files_and_reports_missing_ones_as_not_found() {
        let (_root, source) = source();
        assert_eq!(source.fetch("a.txt").await.unwrap(), "alpha");
        assert_eq!(source.fetch("sub/b.txt").await.unwrap(), "beta");
        assert!(matches!(source.fetch("nope.txt").await, Err(FetchError::NotFound)));
        assert!(matches!(source.fetch("sub").await, Err(FetchError::NotFound)));
        assert!(matches!(source.fetch("a.txt/x").await, Err(FetchError::NotFound)));
    }

    #[tokio::test]
    async fn refuses_keys_that_leave_the_folder() {
        let (root, source) = source();
        let abs = root.path().join("secret.txt").display().to_string();
        for key in [
            "../secret.txt",
            "sub/../../secret.txt",
            "/etc/passwd",
            &abs,
            "./a.txt",
            "sub//b.txt",
            "..\\secret.txt",
            "..",
        ] {
            match source.fetch(key).await {
                Err(FetchError::Failed(err)) => {
                    assert!(err.to_string().contains("refused"), "{key}: {err}")
                }
                other => panic!("{key} should be refused, got {other:?}"),
            }
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn refuses_symlinks_out_of_the_folder() {
        let (root, source) = source();
        std::os::unix::fs::symlink(root.path().join("secret.txt"), root.path().join("data/link"))
            .unwrap();
        match source.fetch("link").await {
            Err(FetchError::Failed(err)) => assert!(err.to_string().contains("outside")),
            other => panic!("the symlink should be refused, got {other:?}"),
        }
    }
}
