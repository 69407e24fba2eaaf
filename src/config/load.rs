//! Loading the layers: the compiled-in defaults, the `--config` file, the environment, then the
//! `*_file` secrets, then the checks.

use std::path::Path;

use config::{Config, Environment, File, FileFormat};

use super::{Settings, SettingsError};
use crate::secret::Secret;

const DEFAULTS: &str = include_str!("../../config/default.toml");
/// The default of `database.url`, as written in `config/default.toml`.
const DEFAULT_DATABASE_URL: &str = "sqlite://tessera.db";

impl Settings {
    /// Loads the layered settings from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &vars)
    }

    /// Loads the layered settings with an explicit environment (tests use this).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path).required(true));
        }
        let tessera_vars: std::collections::HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("TESSERA__"))
            .cloned()
            .collect();
        let has_db_url = tessera_vars.contains_key("TESSERA__DATABASE__URL");
        builder = builder.add_source(
            Environment::with_prefix("TESSERA")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(tessera_vars)),
        );
        if !has_db_url && let Some((_, url)) = env.iter().find(|(k, _)| k == "DATABASE_URL") {
            builder = builder.set_override("database.url", url.clone())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        // The Sentry SDKs' own variable, for a DSN not configured the Tessera way.
        if settings.exceptions.dsn.expose().is_empty()
            && let Some((_, dsn)) = env.iter().find(|(k, _)| k == "SENTRY_DSN")
        {
            settings.exceptions.dsn = Secret::new(dsn.clone());
        }
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Replaces `*_file` settings with the contents of the files they name.
    fn read_secret_files(&mut self) -> Result<(), SettingsError> {
        let read = |path: &Path, key: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    SettingsError::Invalid(format!("{key}: cannot read {}: {e}", path.display()))
                })
        };
        if let Some(path) = &self.database.url_file {
            if self.database.url.expose() != DEFAULT_DATABASE_URL {
                return Err(SettingsError::Invalid(
                    "database.url and database.url_file are both set; give the URL one way".into(),
                ));
            }
            self.database.url = Secret::new(read(path, "database.url_file")?);
        }
        if let Some(path) = &self.keys.encryption_key_file {
            if !self.keys.encryption_key.is_empty() {
                return Err(SettingsError::Invalid(
                    "keys.encryption_key and keys.encryption_key_file are both set; give the key one way".into(),
                ));
            }
            self.keys.encryption_key = Secret::new(read(path, "keys.encryption_key_file")?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Settings, test_env as env};

    #[test]
    fn defaults_load_and_match_the_documented_values() {
        let s = Settings::load_from(None, &[]).expect("defaults load");
        assert_eq!(s.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url.expose(), "sqlite://tessera.db");
        assert_eq!(s.passwords.argon2_memory_kib, 19456);
        assert_eq!(s.tokens.access_ttl, Duration::from_secs(600));
        assert_eq!(s.tokens.refresh_idle_ttl, Duration::from_secs(14 * 86400));
        assert_eq!(s.server.request_timeout, Duration::from_secs(30));
        assert_eq!(
            s.database.idle_in_transaction_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(s.database.settle_timeout, Duration::from_secs(15));
    }

    #[test]
    fn environment_overrides_and_database_url_fallback() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("TESSERA__SERVER__BIND", "0.0.0.0:9999"),
                ("TESSERA__DATABASE__MAX_CONNECTIONS", "3"),
                ("DATABASE_URL", "postgres://a:b@h/db"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.server.bind.to_string(), "0.0.0.0:9999");
        assert_eq!(s.database.max_connections, 3);
        assert_eq!(s.database.url.expose(), "postgres://a:b@h/db");

        let s = Settings::load_from(
            None,
            &env(&[
                ("TESSERA__DATABASE__URL", "sqlite://x.db"),
                ("DATABASE_URL", "postgres://a:b@h/db"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.database.url.expose(), "sqlite://x.db");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Settings::load_from(None, &env(&[("TESSERA__SERVER__NOPE", "1")]))
            .expect_err("unknown key");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Settings::load_from(None, &env(&[("TESSERA__SERVER__BIND", "not an address")]))
            .expect_err("bad value");
        assert!(err.to_string().contains("bind"), "{err}");
    }

    #[test]
    fn secrets_can_come_from_files_but_not_twice() {
        let dir = tempfile::tempdir().expect("dir");
        let url_file = dir.path().join("url");
        let key_file = dir.path().join("kek");
        std::fs::write(&url_file, "postgres://u:p@h/db\n").expect("write");
        std::fs::write(&key_file, "a2V5a2V5a2V5\n").expect("write");
        let s = Settings::load_from(
            None,
            &env(&[
                (
                    "TESSERA__DATABASE__URL_FILE",
                    url_file.to_str().expect("utf8"),
                ),
                (
                    "TESSERA__KEYS__ENCRYPTION_KEY_FILE",
                    key_file.to_str().expect("utf8"),
                ),
            ]),
        )
        .expect("loads");
        assert_eq!(s.database.url.expose(), "postgres://u:p@h/db");
        assert_eq!(s.keys.encryption_key.expose(), "a2V5a2V5a2V5");
        let err = Settings::load_from(
            None,
            &env(&[
                (
                    "TESSERA__DATABASE__URL_FILE",
                    url_file.to_str().expect("utf8"),
                ),
                ("DATABASE_URL", "postgres://x/y"),
            ]),
        )
        .expect_err("both");
        assert!(err.to_string().contains("url_file"), "{err}");
        let err = Settings::load_from(
            None,
            &env(&[
                (
                    "TESSERA__KEYS__ENCRYPTION_KEY_FILE",
                    key_file.to_str().expect("utf8"),
                ),
                ("TESSERA__KEYS__ENCRYPTION_KEY", "abc"),
            ]),
        )
        .expect_err("both");
        assert!(err.to_string().contains("encryption_key_file"), "{err}");
    }
}
