//! Where the key-encryption key comes from: the settings; else, on SQLite, a file beside the
//! database (generated on first use); on a database several servers share (Postgres) nowhere
//! else, since every instance must share one configured key.

use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::crypto::CryptoError;
use crate::crypto::keys::Kek;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("keys.encryption_key")]
    Configured(#[source] CryptoError),
    #[error(
        "keys.encryption_key is required with Postgres: set TESSERA__KEYS__ENCRYPTION_KEY to 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"
    )]
    RequiredWithPostgres,
    #[error("key file {} is accessible to other users (mode {mode:o}); run `chmod 600` on it", path.display())]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {}", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: CryptoError,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Generated(#[from] CryptoError),
}

/// The file holding the generated key-encryption key beside a SQLite database.
fn kek_file_for(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.kek")))
}

/// The key-encryption key: from settings; else, on SQLite, from (or, with `create`, into) a
/// file beside the database; on a database several servers share (Postgres), refused when
/// `create`, else `None`.
pub fn load_kek(settings: &Settings, store: &Store, create: bool) -> Result<Option<Kek>, KekError> {
    if !settings.keys.encryption_key.is_empty() {
        return Ok(Some(
            Kek::from_base64(settings.keys.encryption_key.expose())
                .map_err(KekError::Configured)?,
        ));
    }
    if store.is_shared() {
        if create {
            return Err(KekError::RequiredWithPostgres);
        }
        return Ok(None);
    }
    let Some(path) = kek_file_for(settings.database.url.expose()) else {
        tracing::warn!(
            "keys.encryption_key is not set; using a throw-away key for an in-memory database"
        );
        return Ok(Some(Kek::from_base64(&Kek::generate_base64())?));
    };
    if path.exists() {
        check_private(&path)?;
        let encoded = std::fs::read_to_string(&path).map_err(|source| KekError::Read {
            path: path.clone(),
            source,
        })?;
        return Ok(Some(Kek::from_base64(&encoded).map_err(|source| {
            KekError::Malformed {
                path: path.clone(),
                source,
            }
        })?));
    }
    if !create {
        return Ok(None);
    }
    let encoded = Kek::generate_base64();
    write_private_file(&path, &encoded).map_err(|source| KekError::Write {
        path: path.clone(),
        source,
    })?;
    tracing::warn!(
        path = %path.display(),
        "keys.encryption_key is not set: generated a key-encryption key file beside the database; keep it with the database and set keys.encryption_key in production"
    );
    Ok(Some(Kek::from_base64(&encoded)?))
}

/// Refuses a key file that others could have written or can read.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KekError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KekError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KekError::NotPrivate {
            path: path.to_owned(),
            mode: meta.permissions().mode() & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KekError> {
    Ok(())
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_file_sits_beside_the_database() {
        assert_eq!(
            kek_file_for("sqlite://tessera.db"),
            Some(PathBuf::from("tessera.db.kek"))
        );
        assert_eq!(
            kek_file_for("sqlite:/var/lib/t.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/t.db.kek"))
        );
        assert_eq!(kek_file_for("sqlite::memory:"), None);
    }
}
