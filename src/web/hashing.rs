//! Password hashing in a fixed pool with bounded memory. Anyone can ask for a password check
//! (the login form, basic auth, `/auth/token`), and each argon2 check needs 19 MiB for tens of
//! milliseconds, so the web server's memory must not depend on how many people ask:
//!
//! - a fixed number of hashing threads ([`THREADS`], one pool per web server, kept while it
//!   runs), never tokio's blocking pool, which grows to hundreds of threads;
//! - argon2id with explicit parameters ([`params`]: 19 MiB, 2 passes, 1 lane, OWASP's first
//!   recommendation), so the memory of one hash is known; stored hashes that would need more
//!   than [`MAX_MEMORY_KIB`] are refused instead of computed;
//! - each thread's argon2 memory is mapped from the kernel (`mmap`), reused while checks are
//!   waiting and unmapped as soon as none is; never taken from `malloc`: glibc
//!   keeps freed blocks this size in per-thread arenas and raises its mmap threshold after the
//!   first free, which is how 48 wrong passwords used to leave the server at 700 MB;
//! - at most [`QUEUE`] checks wait for a thread; beyond that, and for a check that waited
//!   longer than [`WAIT`], the answer is [`PasswordChecksBusy`] (503) without hashing. A check
//!   whose request went away meanwhile is not computed either.
//!
//! So the server's memory for hashing is at most `THREADS × 19 MiB` while checks run, and
//! nothing once they are done. The sign-in throttle (`throttle`) sits in front: a refused
//! attempt never gets here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::oneshot;

/// Hashing threads: checks computed at once. Hashing is CPU-bound, so more threads than
/// cores would add memory, not speed; two keep a burst of sign-ins moving.
pub const THREADS: usize = 2;
/// Checks that may wait for a thread; more are refused at once. Waiting costs no argon2
/// memory, and 256 drain within [`WAIT`] (about 40 ms per check per thread).
pub const QUEUE: usize = 256;
/// How long a check may wait for a thread before it is refused.
pub const WAIT: Duration = Duration::from_secs(10);
/// The most memory a stored hash may ask for (64 MiB). Ours use 19 MiB.
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;

/// The parameters new hashes get: argon2id, m = 19 MiB, t = 2, p = 1, 32-byte output (the
/// `argon2` crate's defaults, written out so the memory of a hash cannot change under us).
pub fn params() -> Params {
    // Constant, valid parameters: `Params::new` only fails for out-of-range values.
    Params::new(19 * 1024, 2, 1, Some(32)).unwrap_or_default()
}

/// All hashing threads are busy and the queue is full, or this check waited [`WAIT`]:
/// answer 503.
#[derive(Debug, thiserror::Error)]
#[error("too many sign-in attempts are being checked right now; try again in a few seconds")]
pub struct PasswordChecksBusy;

/// A hash that cannot be checked (malformed, or needing more memory than allowed).
#[derive(Debug, thiserror::Error)]
#[error("password hash: {0}")]
pub struct HashError(String);

fn err(e: impl std::fmt::Display) -> HashError {
    HashError(e.to_string())
}

enum Work {
    Hash(String),
    Verify { password: String, hash: String },
}

enum Done {
    Hashed(String),
    Verified(bool),
}

struct Job {
    work: Work,
    queued: Instant,
    reply: oneshot::Sender<Result<Done, anyhow::Error>>,
}

/// Counters for tests and the measurement script's claims.
#[derive(Debug, Default)]
pub struct Stats {
    /// Hashes being computed now.
    pub active: AtomicUsize,
    /// The most computed at once, ever.
    pub peak: AtomicUsize,
    /// Hashes computed in all.
    pub computed: AtomicUsize,
}

/// A pool of hashing threads. The web server uses one for the whole process ([`global`]).
pub struct HashPool {
    tx: SyncSender<Job>,
    wait: Duration,
    pub stats: Arc<Stats>,
}

impl HashPool {
    /// Starts `threads` hashing threads with room for `queue` waiting checks.
    pub fn new(threads: usize, queue: usize, wait: Duration) -> HashPool {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(Stats::default());
        for i in 0..threads.max(1) {
            let (rx, stats) = (rx.clone(), stats.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("updraft-hash-{i}"))
                .spawn(move || work(rx, stats, wait));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        HashPool { tx, wait, stats }
    }

    async fn run(&self, work: Work) -> anyhow::Result<Done> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work,
            queued: Instant::now(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PasswordChecksBusy.into()),
            Err(TrySendError::Disconnected(_)) => {
                anyhow::bail!("the password hashing threads are gone")
            }
        }
        // A thread answers every job it takes (a stale one with `PasswordChecksBusy`); the
        // timeout only guards against threads that could not be started.
        match tokio::time::timeout(self.wait + Duration::from_secs(60), answer).await {
            Ok(Ok(done)) => done,
            Ok(Err(_)) => anyhow::bail!("a password hashing thread stopped"),
            Err(_) => Err(PasswordChecksBusy.into()),
        }
    }

    /// A new hash of `password`, as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        match self.run(Work::Hash(password.to_string())).await? {
            Done::Hashed(h) => Ok(h),
            Done::Verified(_) => anyhow::bail!("the hashing pool answered the wrong question"),
        }
    }

    /// Whether `password` matches the stored `hash`.
    pub async fn verify(&self, password: &str, hash: &str) -> anyhow::Result<bool> {
        let work = Work::Verify {
            password: password.to_string(),
            hash: hash.to_string(),
        };
        match self.run(work).await? {
            Done::Verified(ok) => Ok(ok),
            Done::Hashed(_) => anyhow::bail!("the hashing pool answered the wrong question"),
        }
    }
}

/// A pool of [`THREADS`] threads, [`QUEUE`] waiting, [`WAIT`], for hashing outside a web
/// server (creating users); the web server has its own in its `AppState`.
pub fn global() -> &'static HashPool {
    static POOL: OnceLock<HashPool> = OnceLock::new();
    POOL.get_or_init(|| HashPool::new(THREADS, QUEUE, WAIT))
}

fn work(rx: Arc<Mutex<Receiver<Job>>>, stats: Arc<Stats>, wait: Duration) {
    let mut memory = Memory::default();
    loop {
        // Holding memory, take only a check that is already waiting; with none (or another
        // thread already waiting for the next one), give the memory back before waiting.
        let job = if memory.is_mapped() {
            match rx.try_lock() {
                Ok(rx) => match rx.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return, // the pool is gone
                },
                Err(_) => None,
            }
        } else {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => Some(job),
                Err(_) => return, // the pool is gone
            }
        };
        let Some(job) = job else {
            memory.release();
            continue;
        };
        if job.reply.is_closed() {
            continue; // the request is gone: nobody wants the answer
        }
        if job.queued.elapsed() > wait {
            let _ = job.reply.send(Err(PasswordChecksBusy.into()));
            continue;
        }
        let now = stats.active.fetch_add(1, Ordering::SeqCst) + 1;
        stats.peak.fetch_max(now, Ordering::SeqCst);
        let done = match job.work {
            Work::Hash(password) => hash_now(&password, &mut memory).map(Done::Hashed),
            Work::Verify { password, hash } => {
                verify_now(&password, &hash, &mut memory).map(Done::Verified)
            }
        };
        stats.active.fetch_sub(1, Ordering::SeqCst);
        stats.computed.fetch_add(1, Ordering::SeqCst);
        let _ = job.reply.send(done.map_err(anyhow::Error::from));
    }
}

/// A hashing thread's argon2 memory: mapped for a check, reused while more are waiting (no
/// page faults per hash in a burst), unmapped when the queue is empty.
#[derive(Default)]
struct Memory(Option<Blocks>);

impl Memory {
    fn is_mapped(&self) -> bool {
        self.0.is_some()
    }

    fn release(&mut self) {
        self.0 = None;
    }

    /// At least `n` blocks. Argon2 writes every block before it reads it, so what an earlier
    /// hash left there does not matter.
    fn blocks(&mut self, n: usize) -> Result<&mut [Block], HashError> {
        if self.0.as_ref().is_none_or(|b| b.len < n) {
            self.0 = None; // unmap the smaller one first
            self.0 = Some(Blocks::map(n)?);
        }
        match &mut self.0 {
            Some(b) => Ok(b.as_mut_slice()),
            None => Err(err("no memory mapped")),
        }
    }
}

fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    input: (&[u8], &[u8]),
    out: &mut [u8],
    memory: &mut Memory,
) -> Result<(), HashError> {
    let (password, salt) = input;
    let blocks = memory.blocks(params.block_count())?;
    argon
        .hash_password_into_with_memory(password, salt, out, blocks)
        .map_err(err)
}

fn hash_now(password: &str, memory: &mut Memory) -> Result<String, HashError> {
    let params = params();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    compute(
        &argon,
        &params,
        (password.as_bytes(), &salt),
        &mut out,
        memory,
    )?;
    let salt = SaltString::encode_b64(&salt).map_err(err)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(err)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(err)?),
    };
    Ok(phc.to_string())
}

fn verify_now(password: &str, stored: &str, memory: &mut Memory) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(stored).map_err(err)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(err)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(err)?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(err)?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return Err(HashError(format!(
            "the stored hash needs {} KiB; at most {MAX_MEMORY_KIB} KiB are allowed",
            params.m_cost()
        )));
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(err("the stored hash has no salt or no output"));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(err)?;
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    compute(
        &argon,
        &params,
        (password.as_bytes(), salt),
        &mut out,
        memory,
    )?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(err)? == expected)
}

/// Argon2's working memory, mapped from the kernel for one hash and returned to it on drop,
/// so no allocator keeps it.
struct Blocks {
    ptr: *mut Block,
    len: usize,
}

impl Blocks {
    fn map(len: usize) -> Result<Blocks, HashError> {
        const { assert!(std::mem::size_of::<Block>() == 1024 && std::mem::align_of::<Block>() <= 4096) };
        let bytes = len.max(1) * std::mem::size_of::<Block>();
        // SAFETY: an anonymous private mapping of `bytes` bytes; no existing memory is
        // touched. The result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(Blocks {
            ptr: ptr.cast(),
            len: len.max(1),
        })
    }

    fn as_mut_slice(&mut self) -> &mut [Block] {
        // SAFETY: `ptr` is a live, page-aligned (so 64-byte-aligned) mapping of `len` blocks
        // owned by `self`; anonymous mappings are zero-filled, and all-zero bytes are a valid
        // `Block` (it is `[u64; 128]`). The borrow of `self` keeps the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, once; no slice outlives `self`.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len * std::mem::size_of::<Block>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[test]
    fn hashes_are_argon2id_with_our_parameters_and_verify_both_ways() {
        let m = &mut Memory::default();
        let h = hash_now("s3cret", m).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_now("s3cret", &h, m).unwrap());
        assert!(!verify_now("wrong", &h, m).unwrap());
        // The argon2 crate agrees, and we accept what it made (hashes stored before this pool).
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        let theirs = {
            use argon2::PasswordHasher;
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            Argon2::default()
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        };
        assert!(verify_now("pw", &theirs, m).unwrap());
        assert!(!verify_now("pW", &theirs, m).unwrap());
        // Memory reused after a release, and for hashes with other parameters.
        m.release();
        let small = "$argon2id$v=19$m=8,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$Yi0Hh0vTn5+9m6OztC4aFg";
        assert!(verify_now("x", small, m).is_ok());
        assert!(verify_now("s3cret", &h, m).unwrap());
    }

    #[test]
    fn greedy_or_broken_stored_hashes_are_refused() {
        let greedy = "$argon2id$v=19$m=1048576,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$vhT1bc9HzviHcUjWAldwblvuZJf5paq7L7NrCkg3kt8";
        let m = &mut Memory::default();
        let e = verify_now("x", greedy, m).unwrap_err().to_string();
        assert!(e.contains("at most 65536 KiB"), "{e}");
        assert!(verify_now("x", "not a hash", m).is_err());
    }

    /// A burst far larger than the pool: never more than `threads` hashes at once, the queue
    /// bound turns the excess away at once (no hashing), and every caller gets an answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_checks_never_exceed_the_pool() {
        let pool = Arc::new(HashPool::new(2, 4, Duration::from_secs(30)));
        let stored = pool.hash("right").await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (pool, stored) = (pool.clone(), stored.clone());
            tasks.push(tokio::spawn(async move {
                let pw = if i % 2 == 0 { "right" } else { "wrong" };
                pool.verify(pw, &stored).await
            }));
        }
        let (mut ok, mut busy) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) if e.is::<PasswordChecksBusy>() => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok + busy, 40);
        assert!(busy > 0, "40 at once cannot all fit 2 threads + 4 waiting");
        assert!(ok >= 4, "at least the queue's 4 are answered: {ok}");
        assert!(pool.stats.peak.load(Ordering::SeqCst) <= 2);
        // Refused checks did no hashing: computed = the first hash + the checks answered.
        assert_eq!(pool.stats.computed.load(Ordering::SeqCst), 1 + ok);
    }

    #[tokio::test]
    async fn a_check_that_waited_too_long_is_refused_unhashed() {
        let pool = HashPool::new(1, 8, Duration::from_millis(1));
        let stored = hash_now("pw", &mut Memory::default()).unwrap();
        let all = futures::future::join_all((0..4).map(|_| pool.verify("pw", &stored))).await;
        let busy = all
            .iter()
            .filter(|r| r.as_ref().is_err_and(|e| e.is::<PasswordChecksBusy>()))
            .count();
        assert!(busy >= 1, "{all:?}");
        assert_eq!(pool.stats.computed.load(Ordering::SeqCst), 4 - busy);
    }
}
