//! Login attempts in flight per account, on this instance.
//!
//! The throttle in the database counts settled failures only, so a correct login never counts
//! against its own account however many run at once. What stops a burst of concurrent guesses
//! from slipping past the limit before the first of them has failed is this gate: an account
//! has at most `max_failures - failures` password checks in flight on an instance; the rest
//! wait for those to settle (and then usually meet the lock). Memory, not the database, holds
//! the in-flight count, so a crash cannot leave an account "busy".
//!
//! Everything is per account, so a flood on some accounts costs the others nothing. The room
//! an account has is computed from a read of its failures, which a settle may overtake: a
//! failure committed just after the read and then let go would free a place the stale count
//! does not know is used up. Every settle therefore bumps the account's epoch under the same
//! lock as its count, and an admission computed from a read older than the last settle is
//! refused as stale (read again). A settle wakes one waiter, not all: each settle frees one
//! place; a waiter admitted with room to spare wakes the next, and a waiter that leaves
//! without taking the place passes the wake-up on ([`Baton`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct LoginGate {
    accounts: Mutex<HashMap<String, Account>>,
}

#[derive(Default)]
struct Account {
    in_flight: usize,
    /// Settles so far.
    epoch: u64,
    /// Tickets out: the entry lives while someone reads or checks.
    watchers: usize,
    settled: Arc<Notify>,
}

/// What [`LoginGate::try_enter`] decided.
pub enum Entry {
    Admitted(Admitted),
    /// As many checks of the account are in flight as it has room for.
    Full,
    /// Something settled since the ticket was taken: read the failures again.
    Stale,
}

/// Taken before reading an account's failures: remembers the account's epoch at that moment
/// and keeps its entry alive.
pub struct Ticket {
    gate: Arc<LoginGate>,
    account: String,
    epoch: u64,
    settled: Arc<Notify>,
}

/// One admitted attempt; dropping it (also when the request is cancelled) frees its place.
pub struct Admitted {
    gate: Arc<LoginGate>,
    account: String,
}

impl LoginGate {
    pub fn ticket(self: &Arc<Self>, account: &str) -> Ticket {
        let mut accounts = self.lock();
        let entry = accounts.entry(account.to_owned()).or_default();
        entry.watchers += 1;
        Ticket {
            gate: self.clone(),
            account: account.to_owned(),
            epoch: entry.epoch,
            settled: entry.settled.clone(),
        }
    }

    /// Admits an attempt if fewer than `room` are in flight on the account and nothing
    /// settled there since `ticket` was taken.
    pub fn try_enter(&self, ticket: &Ticket, room: usize) -> Entry {
        let mut accounts = self.lock();
        let Some(entry) = accounts.get_mut(&ticket.account) else {
            return Entry::Stale;
        };
        if entry.epoch != ticket.epoch {
            return Entry::Stale;
        }
        if entry.in_flight >= room {
            return Entry::Full;
        }
        entry.in_flight += 1;
        if entry.in_flight < room {
            // Room is left: the next waiter may come in too (wake-ups chain one by one).
            entry.settled.notify_one();
        }
        Entry::Admitted(Admitted {
            gate: ticket.gate.clone(),
            account: ticket.account.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Account>> {
        // Plain counters; a panic elsewhere cannot leave them inconsistent.
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget_if_idle(accounts: &mut HashMap<String, Account>, account: &str) {
        if accounts
            .get(account)
            .is_some_and(|a| a.in_flight == 0 && a.watchers == 0)
        {
            accounts.remove(account);
        }
    }
}

impl Ticket {
    /// Resolves when an attempt on the account settles. A settle with nobody waiting leaves
    /// its wake-up behind for the next waiter, so none is lost between a `Full` answer and
    /// the wait.
    pub fn settled(&self) -> tokio::sync::futures::Notified<'_> {
        self.settled.notified()
    }
}

/// A wake-up a waiter holds; dropped while armed, it goes to the next waiter.
#[derive(Default)]
pub struct Baton(Option<Arc<Notify>>);

impl Baton {
    pub fn arm(&mut self, ticket: &Ticket) {
        self.0 = Some(ticket.settled.clone());
    }

    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        if let Some(settled) = self.0.take() {
            settled.notify_one();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut accounts = self.gate.lock();
        if let Some(entry) = accounts.get_mut(&self.account) {
            entry.watchers = entry.watchers.saturating_sub(1);
        }
        LoginGate::forget_if_idle(&mut accounts, &self.account);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut accounts = self.gate.lock();
        if let Some(entry) = accounts.get_mut(&self.account) {
            entry.epoch = entry.epoch.wrapping_add(1);
            entry.in_flight = entry.in_flight.saturating_sub(1);
            entry.settled.notify_one();
        }
        LoginGate::forget_if_idle(&mut accounts, &self.account);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Entry, LoginGate};

    fn admitted(entry: Entry) -> super::Admitted {
        match entry {
            Entry::Admitted(a) => a,
            Entry::Full => panic!("full"),
            Entry::Stale => panic!("stale"),
        }
    }

    #[test]
    fn admits_up_to_room_and_frees_on_drop() {
        let gate = Arc::new(LoginGate::default());
        let t = gate.ticket("alice");
        let a = admitted(gate.try_enter(&t, 2));
        let b = admitted(gate.try_enter(&t, 2));
        assert!(matches!(gate.try_enter(&t, 2), Entry::Full));
        let bob = gate.ticket("bob");
        let c = admitted(gate.try_enter(&bob, 1));
        drop(a);
        assert!(matches!(gate.try_enter(&t, 2), Entry::Stale));
        drop(t);
        let again = gate.ticket("alice");
        let d = admitted(gate.try_enter(&again, 2));
        drop((b, c, d, again, bob));
        assert!(gate.lock().is_empty(), "nothing left behind");
    }

    #[test]
    fn a_settle_elsewhere_does_not_make_a_ticket_stale() {
        let gate = Arc::new(LoginGate::default());
        let alice = gate.ticket("alice");
        let bob = gate.ticket("bob");
        drop(admitted(gate.try_enter(&bob, 1)));
        assert!(matches!(gate.try_enter(&alice, 1), Entry::Admitted(_)));
    }

    #[tokio::test]
    async fn a_settle_wakes_a_waiter() {
        let gate = Arc::new(LoginGate::default());
        let t = gate.ticket("alice");
        let a = admitted(gate.try_enter(&t, 1));
        let waiter = gate.ticket("alice");
        let settled = waiter.settled();
        assert!(matches!(gate.try_enter(&waiter, 1), Entry::Full));
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(1), settled)
            .await
            .expect("woken");
    }

    /// A success that frees several places: the woken waiter, admitted with room to spare,
    /// wakes the next one instead of leaving it to time out.
    #[tokio::test]
    async fn wake_ups_chain_while_room_is_left() {
        let gate = Arc::new(LoginGate::default());
        let first = gate.ticket("alice");
        let running = admitted(gate.try_enter(&first, 1));
        let (w1, w2) = (gate.ticket("alice"), gate.ticket("alice"));
        let mut n1 = std::pin::pin!(w1.settled());
        let mut n2 = std::pin::pin!(w2.settled());
        n1.as_mut().enable();
        n2.as_mut().enable();
        drop(running);
        let wait = std::time::Duration::from_secs(1);
        tokio::time::timeout(wait, n1)
            .await
            .expect("first waiter woken");
        let retry = gate.ticket("alice");
        let _in = admitted(gate.try_enter(&retry, 3));
        tokio::time::timeout(wait, n2)
            .await
            .expect("the second waiter is woken by the first one's admission");
    }

    #[test]
    fn no_room_admits_nothing() {
        let gate = Arc::new(LoginGate::default());
        let t = gate.ticket("alice");
        assert!(matches!(gate.try_enter(&t, 0), Entry::Full));
        drop(t);
        assert!(gate.lock().is_empty());
    }
}
