//! The process-wide pools behind [`super::Labels`]: one of strings (label keys and values)
//! and one of whole sorted label sets. Pods of one Deployment carry the same labels and
//! annotations, and the keys and values of different sets repeat (`app`, `version`,
//! `security.istio.io/tlsMode`, `istio`), so each distinct string and set is kept once.
//!
//! A pool holds a reference to each of its items; an item nothing else refers to any more is
//! dropped by the next sweep, which runs when the pool has doubled since the last one. So a
//! pool never holds more than about twice what is live (plus [`MIN_SWEEP`] items), whatever
//! the churn (every rollout brings new `pod-template-hash` values), at an amortized O(1) per
//! insertion.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

/// A label key and its value.
pub(super) type Pair = (Arc<str>, Arc<str>);

/// Below this many items a pool is not swept.
const MIN_SWEEP: usize = 1024;

struct Pool<T: ?Sized> {
    items: HashSet<Arc<T>>,
    /// Sweep when `items` reaches this size.
    sweep_at: usize,
}

impl<T: ?Sized + Eq + Hash> Pool<T> {
    fn new() -> Self {
        Pool {
            items: HashSet::new(),
            sweep_at: MIN_SWEEP,
        }
    }

    /// The pooled item equal to `value`, copied into the pool if there is none.
    fn get(&mut self, value: &T) -> Arc<T>
    where
        for<'a> Arc<T>: From<&'a T>,
    {
        if let Some(item) = self.items.get(value) {
            return item.clone();
        }
        if self.items.len() >= self.sweep_at {
            // Under the lock, a count of one means only the pool refers to the item: nobody
            // else can clone it any more.
            self.items.retain(|item| Arc::strong_count(item) > 1);
            self.sweep_at = (2 * self.items.len()).max(MIN_SWEEP);
        }
        let item = Arc::from(value);
        self.items.insert(item.clone());
        item
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.items.len()
    }
}

static STRINGS: LazyLock<Mutex<Pool<str>>> = LazyLock::new(|| Mutex::new(Pool::new()));
static SETS: LazyLock<Mutex<Pool<[Pair]>>> = LazyLock::new(|| Mutex::new(Pool::new()));

/// A pool's items stay consistent whatever panicked while it was held (an insertion either
/// happened or did not), so a poisoned lock is taken as it is.
fn lock<T: ?Sized>(pool: &Mutex<Pool<T>>) -> MutexGuard<'_, Pool<T>> {
    pool.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pooled copy of `s`.
pub(crate) fn string(s: &str) -> Arc<str> {
    lock(&STRINGS).get(s)
}

/// The pooled set of `pairs`, which are sorted by key with no key twice; each key and value
/// is pooled too.
pub(super) fn set<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Arc<[Pair]> {
    let pairs: Vec<Pair> = {
        let mut strings = lock(&STRINGS);
        pairs
            .iter()
            .map(|(k, v)| (strings.get(k.as_ref()), strings.get(v.as_ref())))
            .collect()
    };
    lock(&SETS).get(pairs.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_and_sets_are_one_allocation() {
        let a = string("intern-test-a");
        let b = string(&String::from("intern-test-a"));
        assert!(Arc::ptr_eq(&a, &b));
        let s1 = set(&[("intern-test-k", "v")]);
        let s2 = set(&[(String::from("intern-test-k"), String::from("v"))]);
        assert!(Arc::ptr_eq(&s1, &s2));
        let s3 = set(&[("intern-test-k", "w")]);
        assert!(!Arc::ptr_eq(&s1, &s3));
        assert!(Arc::ptr_eq(&s1[0].0, &s3[0].0));
        assert!(Arc::ptr_eq(&s1[0].0, &string("intern-test-k")));
    }

    #[test]
    fn a_pool_drops_what_nothing_refers_to_once_it_doubled() {
        let mut pool: Pool<str> = Pool::new();
        let kept: Vec<Arc<str>> = (0..10).map(|i| pool.get(&*i.to_string())).collect();
        for i in 10..MIN_SWEEP {
            pool.get(&*i.to_string());
        }
        assert_eq!(pool.len(), MIN_SWEEP);
        // The next new item sweeps: only the ten still referred to stay, and it.
        let next = pool.get("next");
        assert_eq!(pool.len(), 11);
        assert!(Arc::ptr_eq(&kept[3], &pool.get("3")));
        assert!(Arc::ptr_eq(&next, &pool.get("next")));
    }
}
