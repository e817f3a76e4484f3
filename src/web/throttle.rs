//! Slows password guessing: per client address and username, the first [`FREE_ATTEMPTS`]
//! password checks in a row are free; after that each one closes the door for twice as long
//! as the last (1 s, 2 s, 4 s, … at most [`MAX_WAIT`]), and attempts while it is closed are
//! answered 429 with `Retry-After` without checking anything, the right password included. A
//! successful sign-in opens it again.
//!
//! Why per address *and* username: per username alone, anyone could lock `admin` out; per
//! address alone, everyone behind one proxy would share a budget. Every attempt counts as a
//! failure until it has succeeded, so a burst of concurrent guesses cannot slip past the count
//! while the argon2 checks run. Unknown usernames are throttled like known ones, so the answers
//! still do not tell which exist. The table is in memory (per process) and bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Password checks in a row a client gets for a username before the waits begin.
pub const FREE_ATTEMPTS: u32 = 5;
/// The longest wait between attempts.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Entries kept at most; the stalest go first.
const CAPACITY: usize = 10_000;
/// An entry untouched this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// The client must wait this long before its next attempt.
#[derive(Debug, thiserror::Error)]
#[error("too many sign-in attempts for this user from your address; try again in {} s", .retry_after.as_secs() + u64::from(.retry_after.subsec_nanos() > 0))]
pub struct Throttled {
    pub retry_after: Duration,
}

struct Entry {
    attempts: u32,
    closed_until: Option<Instant>,
    last: Instant,
}

#[derive(Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<(IpAddr, String), Entry>>,
}

impl LoginThrottle {
    /// Counts an attempt, or refuses it while the door is closed.
    pub fn attempt(&self, client: IpAddr, username: &str) -> Result<(), Throttled> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
            if entries.len() >= CAPACITY {
                let stalest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    entries.remove(&k);
                }
            }
        }
        let entry = entries
            .entry((client, username.to_lowercase()))
            .or_insert(Entry {
                attempts: 0,
                closed_until: None,
                last: now,
            });
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.attempts = 0;
            entry.closed_until = None;
        }
        if let Some(until) = entry.closed_until.filter(|u| *u > now) {
            return Err(Throttled {
                retry_after: until - now,
            });
        }
        entry.attempts += 1;
        entry.last = now;
        if entry.attempts >= FREE_ATTEMPTS {
            let doublings = (entry.attempts - FREE_ATTEMPTS).min(6);
            let wait = (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_WAIT);
            entry.closed_until = Some(now + wait);
        }
        Ok(())
    }

    /// The password was right: this client starts afresh for this username.
    pub fn succeeded(&self, client: IpAddr, username: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&(client, username.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn free_attempts_then_doubling_waits_per_address_and_user() {
        let t = LoginThrottle::default();
        for _ in 0..FREE_ATTEMPTS {
            t.attempt(A, "alice").unwrap();
        }
        let wait = t.attempt(A, "alice").unwrap_err().retry_after;
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        // Other users from the same address, and the same user from elsewhere, are not held.
        t.attempt(A, "bob").unwrap();
        t.attempt(B, "alice").unwrap();
        // Case does not make a new budget.
        assert!(t.attempt(A, "ALICE").is_err());
        std::thread::sleep(Duration::from_millis(1050));
        t.attempt(A, "alice").unwrap();
        let wait = t.attempt(A, "alice").unwrap_err().retry_after;
        assert!(wait > Duration::from_millis(1500), "doubled: {wait:?}");
        t.succeeded(A, "alice");
        t.attempt(A, "alice").unwrap();
    }
}
