//! The SQLite database file: created readable and writable by its owner alone, whatever the
//! umask, before sqlx opens it. SQLite gives the `-wal` and `-shm` files the database file's mode.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

use super::super::StoreError;

/// The file a SQLite URL names (percent-decoded, as sqlx reads it); `None` for an in-memory
/// database or a URL sqlx would not take.
fn path_of(url: &str) -> Option<PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (!path.as_os_str().is_empty()).then(|| path.to_path_buf())
}

/// Creates the database file with mode 0600 when the URL lets sqlx create it (`mode=rwc`) and it
/// does not exist yet; an existing file is left as it is, with a warning when others may read it.
pub(super) fn create_private(url: &str) -> Result<(), StoreError> {
    if !url.contains("mode=rwc") {
        return Ok(());
    }
    let Some(path) = path_of(url) else {
        return Ok(());
    };
    // A symlink to a file not there yet (O_EXCL refuses to follow it): create its target.
    let target = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() && !path.exists() => {
            match std::fs::read_link(&path) {
                Ok(link) => path.parent().map_or(link.clone(), |dir| dir.join(link)),
                Err(error) => return Err(StoreError::File { path, error }),
            }
        }
        _ => path,
    };
    match create_new_private(&target) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_shared(&target);
            Ok(())
        }
        Err(error) => Err(StoreError::File {
            path: target,
            error,
        }),
    }
}

#[cfg(unix)]
fn create_new_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // An empty file is an empty database to SQLite.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
fn create_new_private(_path: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// A file an older version (or an operator) made readable by others keeps its mode: tightening
/// it could break a backup set up on purpose, so it is said, not changed.
#[cfg(unix)]
fn warn_if_shared(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the database file is accessible to other users; run `chmod 600` on it (its -wal and -shm files follow it)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &std::path::Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_a_sqlite_url() {
        let path = |url: &str| path_of(url).map(|p| p.display().to_string());
        assert_eq!(path("sqlite://tessera.db").as_deref(), Some("tessera.db"));
        assert_eq!(
            path("sqlite:/var/lib/t.db?mode=rwc").as_deref(),
            Some("/var/lib/t.db")
        );
        assert_eq!(
            path("sqlite:///srv/my%20data/t.db").as_deref(),
            Some("/srv/my data/t.db")
        );
        assert_eq!(path("sqlite::memory:"), None);
        assert_eq!(path("sqlite://t.db?mode=memory"), None);
    }
}
