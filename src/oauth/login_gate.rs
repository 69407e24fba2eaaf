//! Login attempts in flight per account, on this instance.
//!
//! The throttle in the database counts settled failures only, so a correct login never counts
//! against its own account however many run at once. What stops a burst of concurrent guesses
//! from slipping past the limit before the first of them has failed is this gate: an account
//! has at most `max_failures - failures` password checks in flight on an instance; the rest
//! wait for those to settle (and then usually meet the lock). Memory, not the database, holds
//! the in-flight count, so a crash cannot leave an account "busy".
//!
//! The room an account has is computed from a read of its failures, which a settle may
//! overtake: a failure committed just after the read and then let go would free a place the
//! stale count does not know is used up. Every settle therefore bumps an epoch under the same
//! lock as the count, and an admission computed from a read older than the last settle is
//! refused as stale (read again).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub struct LoginGate {
    state: Mutex<State>,
    settled: Notify,
}

#[derive(Default)]
struct State {
    in_flight: HashMap<String, usize>,
    /// Settles so far, on any account.
    epoch: u64,
}

/// What [`LoginGate::try_enter`] decided.
pub enum Entry<'a> {
    Admitted(Admitted<'a>),
    /// As many checks of the account are in flight as it has room for.
    Full,
    /// Something settled since `epoch` was taken: read the failures again.
    Stale,
}

/// One admitted attempt; dropping it (also when the request is cancelled) frees its place.
pub struct Admitted<'a> {
    gate: &'a LoginGate,
    account: String,
}

impl LoginGate {
    /// Take before reading the account's failures; pass to [`LoginGate::try_enter`].
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Admits an attempt on `account` if fewer than `room` are in flight there and nothing
    /// settled since `epoch`, when `room` was read.
    pub fn try_enter(&self, account: &str, room: usize, epoch: u64) -> Entry<'_> {
        let mut state = self.lock();
        if state.epoch != epoch {
            return Entry::Stale;
        }
        let n = state.in_flight.get(account).copied().unwrap_or(0);
        if n >= room {
            return Entry::Full;
        }
        state.in_flight.insert(account.to_owned(), n + 1);
        Entry::Admitted(Admitted {
            gate: self,
            account: account.to_owned(),
        })
    }

    /// Resolves once some attempt has settled. Create it before [`LoginGate::try_enter`]
    /// so that a settle in between is not missed.
    pub fn settled(&self) -> tokio::sync::futures::Notified<'_> {
        self.settled.notified()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain counters; a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        state.epoch = state.epoch.wrapping_add(1);
        if let Some(n) = state.in_flight.get_mut(&self.account) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.in_flight.remove(&self.account);
            }
        }
        drop(state);
        self.gate.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::{Entry, LoginGate};

    fn admitted(entry: Entry<'_>) -> super::Admitted<'_> {
        match entry {
            Entry::Admitted(a) => a,
            Entry::Full => panic!("full"),
            Entry::Stale => panic!("stale"),
        }
    }

    #[test]
    fn admits_up_to_room_and_frees_on_drop() {
        let gate = LoginGate::default();
        let e = gate.epoch();
        let a = admitted(gate.try_enter("alice", 2, e));
        let b = admitted(gate.try_enter("alice", 2, e));
        assert!(matches!(gate.try_enter("alice", 2, e), Entry::Full));
        let bob = admitted(gate.try_enter("bob", 1, e));
        drop(a);
        let e = gate.epoch();
        let c = admitted(gate.try_enter("alice", 2, e));
        drop((b, c, bob));
        assert!(gate.lock().in_flight.is_empty(), "nothing left behind");
    }

    #[test]
    fn a_settle_after_the_read_makes_the_room_stale() {
        let gate = LoginGate::default();
        let a = admitted(gate.try_enter("alice", 1, gate.epoch()));
        let read_at = gate.epoch();
        drop(a);
        assert!(matches!(gate.try_enter("alice", 1, read_at), Entry::Stale));
        assert!(matches!(
            gate.try_enter("alice", 1, gate.epoch()),
            Entry::Admitted(_)
        ));
    }

    #[test]
    fn no_room_admits_nothing_and_stores_nothing() {
        let gate = LoginGate::default();
        assert!(matches!(
            gate.try_enter("alice", 0, gate.epoch()),
            Entry::Full
        ));
        assert!(gate.lock().in_flight.is_empty());
    }
}
