//! argon2id password hashing. Hashing is slow on purpose, so it runs on a fixed set of
//! threads behind a semaphore: memory stays bounded under a flood and async workers stay free.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::CryptoError;

/// Outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The stored hash uses other parameters than configured: re-hash after a success.
    pub needs_rehash: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in progress")]
    Busy,
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// How passwords are hashed, and how many hashes may run at once.
#[derive(Debug, Clone)]
pub struct HashParams {
    /// argon2id memory cost in KiB.
    pub memory_kib: u32,
    /// argon2id iterations.
    pub iterations: u32,
    /// argon2id lanes.
    pub parallelism: u32,
    /// Hashes computed at once; 0 means one per core.
    pub max_concurrent: usize,
    /// How long a caller waits for a hashing slot.
    pub queue_timeout: Duration,
}

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    /// Jobs running or queued to run next: two per hashing thread.
    slots: Arc<Semaphore>,
    threads: std::sync::mpsc::SyncSender<Job>,
    queue_timeout: Duration,
    /// A real hash of a random password: unknown users are verified against it so that they
    /// take as long as known ones.
    dummy_hash: Arc<String>,
}

impl Hasher {
    pub fn params_from(options: &HashParams) -> Result<Params, CryptoError> {
        Params::new(
            options.memory_kib,
            options.iterations,
            options.parallelism,
            None,
        )
        .map_err(|e| CryptoError::Hash(e.to_string()))
    }

    pub fn new(options: &HashParams) -> Result<Self, CryptoError> {
        let params = Self::params_from(options)?;
        let dummy_hash = hash_with(&params, &super::tokens::random_id())?;
        Self::build(options, params, dummy_hash)
    }

    /// A hasher that only hashes new passwords (the admin CLI): it skips computing the dummy
    /// hash that equalizes login timing, which costs a full hash at start-up. `verify` with
    /// no stored hash still answers "no", only faster.
    pub fn for_new_passwords(options: &HashParams) -> Result<Self, CryptoError> {
        let params = Self::params_from(options)?;
        Self::build(options, params, String::new())
    }

    fn build(
        options: &HashParams,
        params: Params,
        dummy_hash: String,
    ) -> Result<Self, CryptoError> {
        let threads = match options.max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Ok(Self {
            params,
            // One job waits beside each running one, so a thread that finishes starts the
            // next at once instead of idling until an async worker hands it one.
            slots: Arc::new(Semaphore::new(threads * 2)),
            threads: start_threads(threads)?,
            queue_timeout: options.queue_timeout,
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    /// Hashes a new password (admin paths, re-hash after login).
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.to_owned();
        self.run(move || hash_with(&params, &password).map_err(HashError::from))
            .await
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no user,
    /// so both cases cost the same.
    pub async fn verify(
        &self,
        stored: Option<&str>,
        password: &str,
    ) -> Result<Verified, HashError> {
        let slot = self.acquire().await?;
        self.verify_in(slot, stored, password).await
    }

    /// Waits (at most `queue_timeout`) for a hashing slot, so a caller can do work that must
    /// happen under the slot before the hash itself.
    pub async fn acquire(&self) -> Result<HashSlot, HashError> {
        self.acquire_until(tokio::time::Instant::now() + self.queue_timeout)
            .await
    }

    /// Waits until `deadline` at most for a hashing slot: a caller that already waited for
    /// something else (the login gate) spends one `queue_timeout` in all.
    pub async fn acquire_until(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<HashSlot, HashError> {
        let waiting = metrics::gauge!("tessera_password_hash_waiting");
        waiting.increment(1.0);
        let permit = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await;
        waiting.decrement(1.0);
        Ok(HashSlot {
            _permit: permit
                .map_err(|_| HashError::Busy)?
                .map_err(|_| HashError::Busy)?,
        })
    }

    /// [`Hasher::verify`] with a slot already held.
    pub async fn verify_in(
        &self,
        slot: HashSlot,
        stored: Option<&str>,
        password: &str,
    ) -> Result<Verified, HashError> {
        let known = stored.is_some();
        let hash = stored.map_or_else(|| self.dummy_hash.as_str().to_owned(), str::to_owned);
        let password = password.to_owned();
        let params = self.params.clone();
        self.run_in(slot, move || {
            let ok = verify_with(&hash, &password);
            Ok(Verified {
                ok: ok && known,
                needs_rehash: ok && known && needs_rehash(&hash, &params),
            })
        })
        .await
    }

    /// How long a caller waits for a hashing slot before it is told to retry.
    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// Slots currently free (for the metrics gauge).
    pub fn available_slots(&self) -> usize {
        self.slots.available_permits()
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let slot = self.acquire().await?;
        self.run_in(slot, job).await
    }

    /// Runs `job` on one of the hashing threads; the slot is held until it is done.
    async fn run_in<T: Send + 'static>(
        &self,
        slot: HashSlot,
        job: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let task: Job = Box::new(move || {
            let started = std::time::Instant::now();
            let outcome = job();
            metrics::histogram!("tessera_password_hash_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            drop(slot);
            let _ = done.send(outcome);
        });
        self.threads
            .send(task)
            .map_err(|_| CryptoError::Hash("hashing threads stopped".into()))?;
        result
            .await
            .map_err(|_| CryptoError::Hash("hashing job lost".into()))?
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Starts `n` threads that run hashing jobs. Hashing runs only here, never on an async
/// worker, and on a fixed set of threads: argon2's 19 MiB working memory is then taken from a
/// bounded set of allocator arenas, so memory stays flat under a flood (on tokio's blocking
/// pool each of dozens of threads kept its own). The threads end when the last sender is
/// dropped.
fn start_threads(n: usize) -> Result<std::sync::mpsc::SyncSender<Job>, CryptoError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(n * 2);
    let receiver = Arc::new(std::sync::Mutex::new(receiver));
    for i in 0..n {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("tessera-hash-{i}"))
            .spawn(move || {
                loop {
                    let job = match receiver.lock() {
                        Ok(rx) => rx.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| CryptoError::Hash(format!("starting a hashing thread: {e}")))?;
    }
    Ok(sender)
}

/// A held hashing slot; dropping it frees the slot.
pub struct HashSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_with(params: &Params, password: &str) -> Result<String, CryptoError> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|h: PasswordHash| h.to_string())
        .map_err(|e| CryptoError::Hash(e.to_string()))
}

/// Checks `password` against a PHC string. The parameters come from the string, not from
/// the instance. Argon2's working memory (19 MiB at the default cost) is allocated once per
/// hashing thread and reused: allocating and zeroing it on every call slowed every verify
/// (`tools/loadgen argon2` measures both ways; BENCHMARKS.md) and let the allocator's
/// footprint grow under a flood.
fn verify_with(stored: &str, password: &str) -> bool {
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm.as_str()),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let expected = expected.as_bytes();
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = BLOCKS.with_borrow_mut(|blocks| {
        let needed = params.block_count();
        if blocks.len() != needed {
            // Shrinks too, so one odd old hash does not pin a large buffer.
            *blocks = vec![argon2::Block::default(); needed];
        }
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut blocks[..])
    });
    computed.is_ok() && crate::secret::constant_time_eq(out, expected)
}

fn needs_rehash(stored: &str, params: &Params) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
        return true;
    }
    match Params::try_from(&parsed) {
        Ok(p) => {
            p.m_cost() != params.m_cost()
                || p.t_cost() != params.t_cost()
                || p.p_cost() != params.p_cost()
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(m: u32) -> HashParams {
        HashParams {
            memory_kib: m,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 2,
            queue_timeout: Duration::from_secs(5),
        }
    }

    /// The reused-buffer verify agrees with argon2's own hashing for other algorithms,
    /// versions, lane counts and output lengths, and rejects what it should.
    #[test]
    fn verifies_phc_strings_of_other_parameters() {
        for (algorithm, version, m, t, p, len) in [
            (Algorithm::Argon2id, Version::V0x13, 1024, 1, 1, 32),
            (Algorithm::Argon2id, Version::V0x13, 2048, 2, 2, 16),
            (Algorithm::Argon2i, Version::V0x13, 1024, 3, 1, 32),
            (Algorithm::Argon2d, Version::V0x10, 1024, 1, 4, 64),
        ] {
            let params = Params::new(m, t, p, Some(len)).expect("params");
            let phc = Argon2::new(algorithm, version, params)
                .hash_password(b"pw one")
                .expect("hash")
                .to_string();
            assert!(verify_with(&phc, "pw one"), "{phc}");
            assert!(!verify_with(&phc, "pw two"), "{phc}");
            assert!(!verify_with(&phc.replace("$v=", "$v=1"), "pw one"));
        }
        assert!(!verify_with("not a hash", "pw one"));
        assert!(!verify_with(
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ",
            "pw one"
        ));
    }

    #[tokio::test]
    async fn hash_verify_and_rehash_detection() {
        let hasher = Hasher::new(&settings(1024)).expect("hasher");
        let hash = hasher.hash("correct horse").await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        let v = hasher
            .verify(Some(&hash), "correct horse")
            .await
            .expect("verify");
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        let v = hasher.verify(Some(&hash), "wrong").await.expect("verify");
        assert!(!v.ok);
        let v = hasher.verify(None, "correct horse").await.expect("verify");
        assert!(!v.ok);

        let stronger = Hasher::new(&settings(2048)).expect("hasher");
        let v = stronger
            .verify(Some(&hash), "correct horse")
            .await
            .expect("verify");
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn garbage_hash_never_verifies() {
        let hasher = Hasher::new(&settings(1024)).expect("hasher");
        let v = hasher
            .verify(Some("not a hash"), "x")
            .await
            .expect("verify");
        assert!(!v.ok);
    }
}
