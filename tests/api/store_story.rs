//! The store conformance story, written once and run on both backends: what the server and
//! the CLI rely on the database to guarantee.

use tessera::store::{
    AuditEvent, AuditFilter, NewClient, NewFamily, NewUser, PoolOptions, Rotation, RotationRequest,
    Store, StoreError, UserProfile,
};

use crate::both_backends;
use crate::helpers::{Backend, TestDb};

async fn open(db: &TestDb) -> Store {
    let store = Store::connect(
        &db.url,
        &PoolOptions {
            max_connections: 8,
            min_connections: 0,
            acquire_timeout: std::time::Duration::from_secs(5),
            idle_in_transaction_timeout: std::time::Duration::from_secs(30),
            settle_timeout: std::time::Duration::from_secs(15),
        },
    )
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn event(action: &'static str) -> AuditEvent {
    AuditEvent::new(1_000, "cli:test", action, "t")
}

fn user(id: &str, name: &str) -> NewUser {
    NewUser {
        id: id.into(),
        username: name.into(),
        username_normalized: name.to_lowercase(),
        password_hash: "$argon2id$fake".into(),
        disabled: false,
        roles: vec![],
        profile: UserProfile::default(),
        now: 1_000,
    }
}

fn alice_profile() -> UserProfile {
    UserProfile {
        email: Some("alice@example.com".into()),
        email_verified: true,
        name: Some("Alice Liddell".into()),
    }
}

fn rotation(presented: &[u8], new: &[u8], client: &str, now: i64) -> RotationRequest {
    RotationRequest {
        presented_hash: presented.to_vec(),
        client_id: client.into(),
        now,
        new_hash: new.to_vec(),
        new_idle_expires_at: now + 100,
        forget_rotated_at: now + 50,
        narrowing: None,
        success_event: event("token.refresh"),
    }
}

async fn users_roles_and_uniqueness(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    // Migrations are idempotent.
    store.migrate().await.expect("migrate twice");

    store
        .create_role("admin", "Admins", 1_000, &event("role.add"))
        .await
        .expect("role");
    let mut alice = user("u1", "Alice");
    alice.roles = vec!["admin".into()];
    store
        .create_user(&alice, &event("user.add"))
        .await
        .expect("user");
    let found = store
        .find_user("alice")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(found.username, "Alice");
    assert_eq!(found.roles, vec!["admin".to_string()]);

    let dup = store
        .create_user(&user("u2", "ALICE"), &event("user.add"))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict("user"))), "{dup:?}");

    let mut ghost = user("u3", "bob");
    ghost.roles = vec!["nope".into()];
    assert!(matches!(
        store.create_user(&ghost, &event("user.add")).await,
        Err(StoreError::NotFound("role"))
    ));
    assert!(
        store.find_user("bob").await.expect("find").is_none(),
        "failed create leaves nothing"
    );

    // SQL metacharacters are data.
    let evil = user("u4", "x'); DROP TABLE users;--");
    store
        .create_user(&evil, &event("user.add"))
        .await
        .expect("evil user");
    assert!(
        store
            .find_user("x'); drop table users;--")
            .await
            .expect("find")
            .is_some()
    );

    assert!(matches!(
        store
            .delete_role("admin", false, &event("role.delete"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .delete_role("admin", true, &event("role.delete"))
            .await
            .expect("force"),
        1
    );
    assert!(
        store
            .find_user("alice")
            .await
            .expect("find")
            .expect("exists")
            .roles
            .is_empty()
    );

    let rows = store
        .audit_query(&AuditFilter {
            action: Some("user.add".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(rows.len(), 2, "only the successful user.add rows were kept");
}

async fn refresh_rotation_is_compare_and_set(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let mut alice = user("u1", "alice");
    alice.profile = alice_profile();
    store
        .create_user(&alice, &event("user.add"))
        .await
        .expect("user");
    let found = store
        .find_user("alice")
        .await
        .expect("find")
        .expect("alice");
    assert_eq!(found.profile, alice_profile());
    store
        .create_client(
            &NewClient {
                client_id: "c".into(),
                name: String::new(),
                secret_hash: Some(vec![1; 32]),
                grant_types: vec!["password".into(), "refresh_token".into()],
                scopes: vec!["read".into()],
                audiences: vec![],
                access_ttl: None,
                introspect: false,
                redirect_uris: vec![
                    "https://app.example.com/cb".into(),
                    "http://127.0.0.1/cb".into(),
                ],
                post_logout_redirect_uris: vec!["https://app.example.com/bye".into()],
                first_party: true,
                now: 1_000,
            },
            &event("client.add"),
        )
        .await
        .expect("client");
    let client = store
        .find_client("c")
        .await
        .expect("find")
        .expect("the client");
    assert_eq!(
        client.redirect_uris,
        ["https://app.example.com/cb", "http://127.0.0.1/cb"]
    );
    assert_eq!(
        client.post_logout_redirect_uris,
        ["https://app.example.com/bye"]
    );
    assert!(client.first_party);
    store
        .create_family(
            &NewFamily {
                id: "f1".into(),
                user_id: "u1".into(),
                client_id: "c".into(),
                scope: "read".into(),
                created_at: 1_000,
                expires_at: 10_000,
                token_hash: b"t1".to_vec(),
                idle_expires_at: 2_000,
                verified_password_hash: "$argon2id$fake".into(),
                session_id: None,
            },
            &[event("token.issued")],
        )
        .await
        .expect("family")
        .then_some(())
        .expect("family created for an unchanged user");
    // A login whose verified hash is no longer the user's creates nothing, audit rows included.
    let stale = store
        .create_family(
            &NewFamily {
                id: "f-stale".into(),
                user_id: "u1".into(),
                client_id: "c".into(),
                scope: "read".into(),
                created_at: 1_000,
                expires_at: 10_000,
                token_hash: b"t-stale".to_vec(),
                idle_expires_at: 2_000,
                verified_password_hash: "$argon2id$changed".into(),
                session_id: None,
            },
            &[event("token.issued"), event("login.success")],
        )
        .await
        .expect("family");
    assert!(!stale, "no family after a password change");
    assert!(
        store
            .find_refresh_token(b"t-stale")
            .await
            .expect("lookup")
            .is_none()
    );
    let issued = store
        .audit_query(&tessera::store::AuditFilter {
            action: Some("token.issued".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(issued.len(), 1, "the refused login wrote no audit rows");

    match store
        .rotate_refresh_token(rotation(b"t1", b"t2", "c", 1_100))
        .await
        .expect("rotate")
    {
        Rotation::Rotated { family, user } => {
            assert_eq!(family.id, "f1");
            assert_eq!(user.username, "alice");
            assert_eq!(
                user.profile,
                alice_profile(),
                "the rotation reads the profile too"
            );
        }
        other => panic!("expected rotation, got {other:?}"),
    }
    // The store claims or reports how the token stands; what that means is oauth's to say.
    match store
        .rotate_refresh_token(rotation(b"t2", b"t3", "other", 1_200))
        .await
        .expect("rotate")
    {
        Rotation::NotClaimed(Some(found)) => {
            assert_eq!(found.client_id, "c", "another client cannot claim it");
            assert_eq!(found.rotated_at, None, "and it is left unrotated");
        }
        other => panic!("expected an unclaimed token, got {other:?}"),
    }
    // t1 was rotated: presenting it again claims nothing and shows when it was rotated.
    match store
        .rotate_refresh_token(rotation(b"t1", b"t4", "c", 1_300))
        .await
        .expect("rotate")
    {
        Rotation::NotClaimed(Some(found)) => {
            assert_eq!(found.rotated_at, Some(1_100));
            assert_eq!(found.family_id, "f1");
            // Revoking the family on reuse is a compare-and-set: only the first wins.
            let reused = [event("refresh.reuse_detected")];
            assert!(
                store
                    .revoke_family("f1", 1_300, "reuse_detected", &reused)
                    .await
                    .expect("revoke")
            );
            assert!(
                !store
                    .revoke_family("f1", 1_300, "reuse_detected", &reused)
                    .await
                    .expect("revoke")
            );
        }
        other => panic!("expected an unclaimed token, got {other:?}"),
    }
    // The family is revoked, so t2 cannot be claimed either.
    match store
        .rotate_refresh_token(rotation(b"t2", b"t5", "c", 1_400))
        .await
        .expect("rotate")
    {
        Rotation::NotClaimed(Some(found)) => assert_eq!(found.revoked_at, Some(1_300)),
        other => panic!("expected a revoked token, got {other:?}"),
    }
    assert!(matches!(
        store
            .rotate_refresh_token(rotation(b"zz", b"t6", "c", 1_400))
            .await
            .expect("rotate"),
        Rotation::NotClaimed(None)
    ));
    let reuse = store
        .audit_query(&AuditFilter {
            action: Some("refresh.reuse_detected".into()),
            limit: 10,
            ..AuditFilter::default()
        })
        .await
        .expect("audit");
    assert_eq!(reuse.len(), 1);
}

both_backends!(
    users_roles_and_uniqueness,
    refresh_rotation_is_compare_and_set
);
