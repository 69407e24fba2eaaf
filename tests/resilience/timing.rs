//! Response timing: failures that must not tell an attacker which part was wrong take the
//! same time, judged by medians, trimmed means and a rank test over interleaved samples.

use std::time::Instant;

use crate::common::http::{Answer, http_client, password_grant, post, send};
use crate::common::server::CLIENT;
use crate::common::{Backend, TestDb};
use crate::{SERIAL, start};

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Mean of the middle 80%.
fn trimmed_mean(sorted: &[f64]) -> f64 {
    let cut = sorted.len() / 10;
    let kept = &sorted[cut..sorted.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// Mann-Whitney U as a probability: how often a sample of `a` is slower than one of `b`
/// (ties count half). 0.5 means the two are indistinguishable by rank.
fn prob_slower(a: &[f64], b: &[f64]) -> f64 {
    let mut wins = 0.0;
    for x in a {
        for y in b {
            wins += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (a.len() * b.len()) as f64
}

/// Latencies in milliseconds of two kinds of request, interleaved ABBA so that drift on a
/// shared machine falls on both alike; a warm-up is discarded.
async fn measure<F, Fut>(rounds: usize, mut request: F) -> (Vec<f64>, Vec<f64>)
where
    F: FnMut(bool, usize) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let warm_up = 20;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for i in 0..rounds + warm_up {
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for kind in order {
            let started = Instant::now();
            let _answer = request(kind, i).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if i >= warm_up {
                if kind { &mut first } else { &mut second }.push(ms);
            }
        }
    }
    first.sort_by(f64::total_cmp);
    second.sort_by(f64::total_cmp);
    (first, second)
}

/// Compares two latency samples; `rel` and `abs_ms` bound the difference of the medians and
/// of the trimmed means (whichever bound is larger).
fn assert_indistinguishable(
    label: &str,
    a: (&str, &[f64]),
    b: (&str, &[f64]),
    rel: f64,
    abs_ms: f64,
) {
    let (ma, mb) = (median(a.1), median(b.1));
    let (ta, tb) = (trimmed_mean(a.1), trimmed_mean(b.1));
    let p = prob_slower(a.1, b.1);
    eprintln!(
        "timing, {label}: {} n={} median {ma:.2} ms trimmed mean {ta:.2} ms | {} n={} median \
         {mb:.2} ms trimmed mean {tb:.2} ms | P({} slower) = {p:.2}",
        a.0,
        a.1.len(),
        b.0,
        b.1.len(),
        a.0
    );
    let allowed = |x: f64, y: f64| (rel * (x + y) / 2.0).max(abs_ms);
    assert!(
        (ma - mb).abs() <= allowed(ma, mb),
        "{label}: medians differ: {ma:.2} ms vs {mb:.2} ms"
    );
    assert!(
        (ta - tb).abs() <= allowed(ta, tb),
        "{label}: trimmed means differ: {ta:.2} ms vs {tb:.2} ms"
    );
    // A real leak (a skipped hash or lookup) separates the two almost completely.
    assert!(
        (0.2..=0.8).contains(&p),
        "{label}: one kind is consistently slower: P = {p:.2}"
    );
}

/// Unknown user and wrong password cost the same: both hash (the unknown user against the
/// dummy hash), count an attempt and write an audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let http = http_client();
    // Throttling would cut the hashing short for the known account; keep it out of the way.
    let mut server = start(&db, &[("TESSERA__SECURITY__MAX_FAILURES", "1000000")]);
    server.wait_ready(&http).await;
    let secret = server.seed();
    let base = server.base();
    let nonce = std::process::id();
    let (unknown, wrong) = measure(200, |unknown, i| {
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        async move {
            let user = if unknown {
                format!("nobody-{nonce}-{i}")
            } else {
                "alice".to_owned()
            };
            let a = password_grant(
                &http,
                &base,
                (CLIENT, &secret),
                &user,
                &format!("Wrong-Guess-{i}"),
            )
            .await
            .expect("login");
            assert!(a.is_invalid_grant(), "{user}: {} {}", a.status, a.body);
            a
        }
    })
    .await;
    assert_indistinguishable(
        "password grant",
        ("unknown user", &unknown),
        ("wrong password", &wrong),
        0.25,
        5.0,
    );
}

/// A wrong secret for a real client and any secret for an unknown client cost the same.
/// Both kinds cycle over ten client ids, so that both meet the audit's per-id folding alike: the
/// first failure of an id in a second is written (and waited for), the rest are folded in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_and_wrong_secret_take_the_same_time() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let http = http_client();
    let mut server = start(&db, &[]);
    server.wait_ready(&http).await;
    server.seed();
    for n in 0..10 {
        server.cli(
            &[
                "client",
                "add",
                &format!("{CLIENT}-{n}"),
                "--grant",
                "client_credentials",
            ],
            None,
        );
    }
    let base = server.base();
    let (unknown, wrong) = measure(300, |unknown, i| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let id = if unknown {
                format!("no-such-client-{}", i % 10)
            } else {
                format!("{CLIENT}-{}", i % 10)
            };
            let presented = format!("tsc_wrong-secret-{i:08}-abcdefghijklmnopqrstuvwxyz");
            let a = send(post(
                &http,
                &base,
                "/oauth/token",
                (&id, &presented),
                &[("grant_type", "client_credentials")],
            ))
            .await
            .expect("token");
            assert_eq!(a.status, 401, "{id}: {}", a.body);
            assert_eq!(a.error(), "invalid_client");
            a
        }
    })
    .await;
    assert_indistinguishable(
        "client authentication",
        ("unknown client", &unknown),
        ("wrong secret", &wrong),
        0.30,
        1.0,
    );
}
