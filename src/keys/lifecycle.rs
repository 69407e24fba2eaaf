//! A key's state is derived from its times, never stored: the active key is the newest
//! generation whose `activates_at` has passed and that is not retired. So there is exactly one
//! active key at any moment on every instance, and rotation is just inserting the next
//! generation, which the database's unique constraint lets only one instance do.

use serde::Serialize;

use crate::store::StoredKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// Signing.
    Active,
    /// Published for verifiers until every token it signed has expired.
    Retired,
    /// Past that: no longer published, removed by clean-up.
    Expired,
    /// Compromised (`tessera key revoke`): not published, verifies nothing, never signs again.
    Revoked,
}

/// One key as `tessera key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub generation: i64,
    pub algorithm: String,
    pub state: KeyState,
    pub created_at: i64,
    pub activates_at: i64,
    /// When it stopped (or will stop) signing, if known.
    pub retires_at: Option<i64>,
    /// When it leaves the JWKS, if known.
    pub unpublished_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Derives every key's state at `now`. `keys` is in generation order; `max_ttl` is the longest
/// access-token lifetime any client can get.
pub fn describe(keys: &[StoredKey], now: i64, max_ttl: i64) -> Vec<KeyInfo> {
    let active = active_at(keys.iter(), now).map(|k| k.generation);
    keys.iter()
        .map(|k| {
            // A key stops signing when it is retired or when a newer generation activates.
            let superseded = keys
                .iter()
                .filter(|n| n.generation > k.generation && ever_signs(n))
                .map(|n| n.activates_at)
                .min();
            let retires_at = match (k.retired_at, superseded) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let unpublished_at = retires_at.map(|r| r.saturating_add(max_ttl));
            // A revoked key is kept (as a record only) until it would have expired anyway.
            let state = if unpublished_at.is_some_and(|u| u <= now) {
                KeyState::Expired
            } else if k.revoked_at.is_some() {
                KeyState::Revoked
            } else if Some(k.generation) == active {
                KeyState::Active
            } else if k.activates_at > now && retires_at.is_none_or(|r| r > k.activates_at) {
                // Pending only if it will sign: not retired, nor superseded by a newer key,
                // before it activates.
                KeyState::Pending
            } else {
                KeyState::Retired
            };
            KeyInfo {
                kid: k.kid.clone(),
                generation: k.generation,
                algorithm: k.algorithm.clone(),
                state,
                created_at: k.created_at,
                activates_at: k.activates_at,
                retires_at,
                unpublished_at,
                revoked_at: k.revoked_at,
            }
        })
        .collect()
}

/// Whether a key signs at all: not retired (or revoked) before it activated.
pub(super) fn ever_signs(key: &StoredKey) -> bool {
    key.retired_at.is_none_or(|r| r > key.activates_at)
}

/// The key that signs at `now`: the newest generation that has activated (a newer one
/// supersedes it for good, even once retired or revoked itself), unless that one is retired or
/// revoked by now; then none, until a successor activates (retiring and revoking make one).
/// A revoked key never signs again, even where `retired_at` still lies ahead (a clock behind).
pub(super) fn active_at<'a>(
    keys: impl Iterator<Item = &'a StoredKey>,
    now: i64,
) -> Option<&'a StoredKey> {
    keys.filter(|k| k.activates_at <= now && ever_signs(k))
        .max_by_key(|k| k.generation)
        .filter(|k| k.retired_at.is_none_or(|r| r > now) && k.revoked_at.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(generation: i64, activates_at: i64, retired_at: Option<i64>) -> StoredKey {
        StoredKey {
            revoked_at: None,
            kid: format!("k{generation}"),
            generation,
            algorithm: "ES256".into(),
            public_jwk: "{}".into(),
            private_key: Vec::new(),
            created_at: 0,
            activates_at,
            retired_at,
        }
    }

    fn states(keys: &[StoredKey], now: i64) -> Vec<KeyState> {
        describe(keys, now, 600)
            .into_iter()
            .map(|k| k.state)
            .collect()
    }

    #[test]
    fn life_cycle_is_derived_from_times() {
        use KeyState::*;
        let keys = vec![key(1, 0, None), key(2, 1000, None)];
        assert_eq!(states(&keys, 500), vec![Active, Pending]);
        assert_eq!(states(&keys, 1000), vec![Retired, Active]);
        assert_eq!(states(&keys, 1599), vec![Retired, Active]);
        assert_eq!(states(&keys, 1600), vec![Expired, Active]);
    }

    #[test]
    fn exactly_one_active_key_whatever_the_times() {
        for now in [0, 10, 100, 1000, 5000] {
            let keys = vec![
                key(1, 0, None),
                key(2, 100, None),
                key(3, 90, None),
                key(4, 6000, None),
            ];
            let active = states(&keys, now)
                .into_iter()
                .filter(|s| *s == KeyState::Active)
                .count();
            assert_eq!(active, 1, "at {now}");
        }
    }

    #[test]
    fn a_superseded_key_never_signs_again() {
        use KeyState::*;
        // k2 superseded k1, then was revoked; k3 was retired while still pending.
        let mut k2 = key(2, 100, Some(500));
        k2.revoked_at = Some(500);
        let keys = vec![key(1, 0, None), k2, key(3, 1000, Some(400))];
        let at = |now| states(&keys, now);
        assert_eq!(at(600), vec![Retired, Revoked, Retired], "no key signs");
        assert!(active_at(keys.iter(), 600).is_none());
        assert!(active_at(keys.iter(), 2000).is_none(), "k3 never activates");
        assert!(
            active_at(keys.iter(), 300).is_none(),
            "revoked: not even where the clock is behind"
        );
        assert_eq!(active_at(keys.iter(), 50).map(|k| k.generation), Some(1));
    }

    #[test]
    fn a_pending_key_superseded_before_it_activates_is_not_pending() {
        use KeyState::*;
        // k2 was published to activate at 3700; k3 was made to sign at once at 200.
        let keys = vec![key(1, 0, None), key(2, 3700, None), key(3, 200, None)];
        assert_eq!(states(&keys, 300), vec![Retired, Retired, Active]);
        assert_eq!(active_at(keys.iter(), 4000).map(|k| k.generation), Some(3));
    }

    #[test]
    fn retired_key_hands_over() {
        use KeyState::*;
        let keys = vec![key(1, 0, Some(50)), key(2, 50, None)];
        assert_eq!(states(&keys, 60), vec![Retired, Active]);
        let info = describe(&keys, 60, 600);
        assert_eq!(info[0].retires_at, Some(50));
        assert_eq!(info[0].unpublished_at, Some(650));
    }
}
