//! Detached single flight: one upstream fetch per key however many ask.
//!
//! The fetch runs in its own task, not in any requester's future, so:
//! - a requester that disconnects, or gives up after the followers' wait
//!   cap, cancels nothing: the fetch finishes and its result is cached (the
//!   fetch caches it itself) for the next request;
//! - the fetch's own time is capped separately (inside the fetch);
//! - an error ends the flight without caching anything; requesters that
//!   still have time start a new one (one of them leads it) rather than
//!   all failing on one transient error.
//!
//! moka's `try_get_with` does none of these: its leader runs the fetch in
//! its own future (cancelled with it) and shares one error with every
//! waiter.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

type Slot<V> = Arc<watch::Sender<Option<Result<V, String>>>>;

/// Fetches in flight, by key.
pub struct Flights<K, V> {
    inflight: Mutex<HashMap<K, (u64, Slot<V>)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            inflight: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// How joining a flight ended.
#[derive(Debug)]
pub enum Joined<V> {
    /// The flight finished (its result).
    Done(Result<V, String>),
    /// The wait cap passed first; the flight goes on.
    TimedOut,
}

impl<K, V> Flights<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the flight of `key`, starting it with `start` (in its own task)
    /// when none runs; waits at most `wait` for its result. Returns whether
    /// this call started it, too.
    pub async fn join<F, Fut>(
        self: &Arc<Self>,
        key: K,
        wait: Duration,
        start: F,
    ) -> (Joined<V>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, String>> + Send + 'static,
    {
        let (mut rx, led) = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some((_, tx)) => (tx.subscribe(), false),
                None => {
                    let tx = Arc::new(watch::channel(None).0);
                    let rx = tx.subscribe();
                    let id = self
                        .next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    map.insert(key.clone(), (id, tx.clone()));
                    let fetch = start();
                    let flights = self.clone();
                    let key = key.clone();
                    tokio::spawn(async move {
                        let result = fetch.await;
                        // Removed before the result is sent: a requester
                        // woken by an error starts a fresh flight.
                        {
                            let mut map =
                                flights.inflight.lock().unwrap_or_else(|e| e.into_inner());
                            if map.get(&key).is_some_and(|(i, _)| *i == id) {
                                map.remove(&key);
                            }
                        }
                        let _ = tx.send(Some(result));
                    });
                    (rx, true)
                }
            }
        };
        if !led {
            crate::metrics::metrics().edge_coalesced.inc();
        }
        let waited = tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await;
        let joined = match waited {
            Ok(Ok(v)) => match &*v {
                Some(r) => Joined::Done(r.clone()),
                None => Joined::Done(Err("flight ended without a result".into())),
            },
            // The sender is gone without a result: the task panicked.
            Ok(Err(_)) => Joined::Done(Err("flight ended without a result".into())),
            Err(_) => Joined::TimedOut,
        };
        (joined, led)
    }

    /// Flights running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Requesters waiting on the flight of `key`.
    #[cfg(test)]
    pub fn waiting(&self, key: &K) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map_or(0, |(_, tx)| tx.receiver_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_fetch_for_many_and_followers_that_give_up_cost_nothing() {
        let flights: Arc<Flights<u32, u32>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = watch::channel(false);
        let fetch = {
            let (calls, gate) = (calls.clone(), gate.clone());
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let mut gate = gate;
                let _ = gate.wait_for(|g| *g).await;
                Ok(42)
            }
        };
        // The first requester starts the fetch and gives up after its wait
        // cap: the fetch goes on.
        let (short, led) = flights
            .join(7, Duration::from_millis(1), fetch.clone())
            .await;
        assert!(led);
        assert!(matches!(short, Joined::TimedOut));
        let mut waiters = Vec::new();
        for _ in 0..50 {
            let (flights, fetch) = (flights.clone(), fetch.clone());
            waiters.push(tokio::spawn(async move {
                flights.join(7, Duration::from_secs(30), fetch).await
            }));
        }
        // Every waiter joined the running flight before it ends.
        while flights.waiting(&7) < 50 {
            tokio::task::yield_now().await;
        }
        let _ = release.send(true);
        for w in waiters {
            let (joined, led) = w.await.expect("task");
            assert!(!led);
            assert!(matches!(joined, Joined::Done(Ok(42))));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(flights.running(), 0);
    }

    #[tokio::test]
    async fn an_error_lets_the_next_requester_lead_a_new_flight() {
        let flights: Arc<Flights<u32, u32>> = Arc::default();
        let (first, _) = flights
            .join(1, Duration::from_secs(5), || async {
                Err("refused".to_owned())
            })
            .await;
        assert!(matches!(first, Joined::Done(Err(_))));
        let (second, led) = flights
            .join(1, Duration::from_secs(5), || async { Ok(5) })
            .await;
        assert!(led);
        assert!(matches!(second, Joined::Done(Ok(5))));
    }
}
