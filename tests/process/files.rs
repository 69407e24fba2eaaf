//! The key-encryption key and the SQLite files: created private, refused when others can read
//! them, required with Postgres.

use std::time::Duration;

use crate::common::server::Server;
use crate::common::{Backend, TestDb};

/// With SQLite and no key-encryption key configured, the first start writes one beside the
/// database (mode 0600) and warns; a key file others can read is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_creates_a_private_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    let http = reqwest::Client::new();
    server.wait_live(&http).await;
    let kek = db.path().join("tessera.db.kek");
    let mode = std::fs::metadata(&kek)
        .expect("key file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        server.logs().contains("keys.encryption_key is not set"),
        "it warns"
    );
    server.signal("-TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).success());

    // Restarting reuses the same key: the signing key still decrypts.
    let mut again = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    again.wait_live(&http).await;
    assert_eq!(
        http.get(again.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    again.signal("-TERM");
    assert!(again.wait_exit(Duration::from_secs(20)).success());

    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut refused = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    let status = refused.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    assert!(refused.logs().contains("chmod 600"), "{}", refused.logs());
}

/// With Postgres and no key-encryption key, `serve` refuses to start and says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_an_encryption_key_refuses_to_start() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut server = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let logs = server.logs();
    assert!(
        logs.contains("keys.encryption_key is required with Postgres"),
        "{logs}"
    );
    assert_eq!(
        logs.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{logs}"
    );
}

/// The SQLite database, its -wal and -shm files and the key file are readable by their owner
/// alone, whatever the umask the server starts under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    for umask in ["0000", "0022"] {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut server =
            Server::start_with_umask(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")], umask);
        server.wait_live(&reqwest::Client::new()).await;
        server.seed();
        // While the server runs, SQLite keeps the write-ahead log and its index beside the file.
        for file in [
            "tessera.db",
            "tessera.db-wal",
            "tessera.db-shm",
            "tessera.db.kek",
        ] {
            let mode = std::fs::metadata(db.path().join(file))
                .unwrap_or_else(|e| panic!("umask {umask}: {file}: {e}"))
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "umask {umask}: {file} is {:o}",
                mode & 0o777
            );
        }
        server.signal("-TERM");
        assert!(server.wait_exit(Duration::from_secs(20)).success());
    }
    // The database path a symlink to a file not created yet: the target is created private.
    let db = TestDb::new(Backend::Sqlite).await;
    std::os::unix::fs::symlink("real.db", db.path().join("tessera.db")).expect("symlink");
    let mut server =
        Server::start_with_umask(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")], "0022");
    server.wait_live(&reqwest::Client::new()).await;
    server.seed();
    for file in ["real.db", "real.db-wal", "real.db-shm"] {
        let mode = std::fs::metadata(db.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is {:o}", mode & 0o777);
    }
    server.signal("-TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).success());
}
