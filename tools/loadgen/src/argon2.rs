//! `argon2`: the single-core verify rate the password budget is measured against, with the
//! working memory allocated per call and reused, and the reused form on every thread at once.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::{die, parse_duration};

#[derive(Args)]
pub struct Argon2Args {
    /// How long each measurement runs.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    seconds: Duration,
    /// Memory cost in KiB.
    #[arg(long, default_value_t = 19456)]
    m: u32,
    /// Iterations.
    #[arg(long, default_value_t = 2)]
    t: u32,
    /// Lanes.
    #[arg(long, default_value_t = 1)]
    p: u32,
    /// Also measure with one buffer reused across calls (and on every thread at once).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    reuse_memory: bool,
    /// Threads of the parallel measurement; one per core by default.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn measure(args: &Argon2Args) {
    use argon2::password_hash::phc::PasswordHash;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};
    use argon2::{Algorithm, Argon2, Params, Version};

    let seconds = args.seconds;
    let params = Params::new(args.m, args.t, args.p, None)
        .unwrap_or_else(|e| die(&format!("argon2 params: {e}")));
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = b"benchmark password 1";
    let phc: String = hasher
        .hash_password(password)
        .map(|h: PasswordHash| h.to_string())
        .unwrap_or_else(|e| die(&format!("argon2 hash: {e}")));
    // As the server does it: parse the PHC string, verify with the parameters it carries.
    let verify = || {
        let parsed = PasswordHash::new(&phc).expect("own hash parses");
        Argon2::default().verify_password(password, &parsed).is_ok()
    };
    assert!(verify(), "argon2 verify of its own hash failed");
    let rate = |f: &mut dyn FnMut() -> bool| {
        let started = Instant::now();
        let mut n: u64 = 0;
        while started.elapsed() < seconds {
            if !f() {
                die("argon2 verify failed");
            }
            n += 1;
        }
        (n, started.elapsed().as_secs_f64())
    };
    let (n, elapsed) = rate(&mut || verify());

    // The same verify with one memory buffer kept across calls (what a dedicated hashing
    // thread could do): no 19 MiB allocation, zeroing and page faults per verify.
    let parsed = PasswordHash::new(&phc).expect("own hash parses");
    let salt = parsed.salt.expect("salt");
    let expected = parsed.hash.expect("hash");
    let reuse_params = Params::try_from(&parsed).expect("params");
    let reuse = Argon2::new(Algorithm::Argon2id, Version::V0x13, reuse_params.clone());
    let mut blocks = vec![argon2::Block::default(); reuse_params.block_count()];
    let mut out = vec![0u8; expected.len()];
    let mut reused_verify = || {
        reuse
            .hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut blocks)
            .is_ok()
            && out.as_slice() == expected.as_bytes()
    };
    let (n_reuse, elapsed_reuse) = if args.reuse_memory {
        rate(&mut reused_verify)
    } else {
        (0, 1.0)
    };
    // The reused-buffer verify on every core at once, nothing else running: what the machine
    // allows in parallel. On a VM whose vCPUs share physical cores or memory bandwidth this is
    // below cores x the single-core rate, and no server can beat it.
    let threads: usize = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let parallel = if n_reuse > 0 {
        let started = Instant::now();
        let total: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (salt, expected, reuse_params) = (&salt, &expected, &reuse_params);
                    scope.spawn(move || {
                        let reuse =
                            Argon2::new(Algorithm::Argon2id, Version::V0x13, reuse_params.clone());
                        let mut blocks = vec![argon2::Block::default(); reuse_params.block_count()];
                        let mut out = vec![0u8; expected.len()];
                        let mut n: u64 = 0;
                        while started.elapsed() < seconds {
                            let ok = reuse
                                .hash_password_into_with_memory(
                                    password,
                                    salt.as_ref(),
                                    &mut out,
                                    &mut blocks,
                                )
                                .is_ok()
                                && out.as_slice() == expected.as_bytes();
                            if !ok {
                                die("argon2 verify failed");
                            }
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        total as f64 / started.elapsed().as_secs_f64()
    } else {
        0.0
    };
    println!(
        "{}",
        json!({
            "mode": "argon2",
            "parallel_threads": threads,
            "parallel_verify_per_s": parallel,
            "verifies": n,
            "seconds": elapsed,
            "verify_per_s": n as f64 / elapsed,
            "ms_per_verify": elapsed * 1000.0 / n as f64,
            "reused_memory_verify_per_s": n_reuse as f64 / elapsed_reuse,
            "phc_prefix": phc.split('$').take(4).collect::<Vec<_>>().join("$"),
        })
    );
}
