//! How this process learns that something in the store changed (an execution's record, a
//! tenant's definitions) as soon as it has, instead of reading the store again and again.
//!
//! Every store announces its own writes here once they are durable. A store that several
//! processes share also carries the announcements between them: PostgreSQL through
//! `LISTEN`/`NOTIFY`, Redis through pub/sub (`notices.rs` of each). A process only pays for what it
//! watches: an announcement for a key nobody here watches is one map lookup.
//!
//! A watcher never misses a change that lands between its read of the store and its wait:
//! it registers ([`Changes::watch`]) *before* it reads, and any announcement after that
//! wakes it. A shared channel can drop messages (its connection broke); when it comes back
//! every watcher is woken as if its key had changed ([`Changes::resync`]), so it reads the
//! store again instead of waiting for a message that is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once, Weak};

use tokio::sync::{Notify, watch};

/// Largest message one announcement over a shared channel carries; PostgreSQL refuses
/// `NOTIFY` payloads of 8000 bytes or more.
pub(crate) const MAX_MESSAGE: usize = 7900;

/// The registry of watched keys, and the link to the processes sharing the store.
pub struct Changes {
    /// Names this process's messages on a shared channel, which it hears back and skips.
    origin: String,
    watched: Mutex<HashMap<Arc<str>, Watched>>,
    /// Connects the shared channel when the first watcher registers: a process that never
    /// waits (`orca run`) opens no listening connection.
    feed: Option<Box<dyn Fn(Weak<Changes>) + Send + Sync>>,
    feed_started: Once,
    /// Tells the listening task to stop when the store goes away.
    stopped: Arc<Notify>,
}

struct Watched {
    seen: watch::Sender<Seen>,
    watchers: usize,
}

/// What has been announced for one key since it was first watched. Every announcement
/// marks the watch channel changed, whatever it alters here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    finished: bool,
    resyncs: u64,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Changes {
    /// Announcements of this process only (a store no other process shares).
    pub fn local() -> Arc<Self> {
        Self::with_feed(None)
    }

    /// Announcements of this process and, once something is watched, of the others that
    /// `start` listens to. `start` is called once, with a handle that stops working when the
    /// store is dropped; see [`Self::stopped`].
    pub(crate) fn shared(start: impl Fn(Weak<Changes>) + Send + Sync + 'static) -> Arc<Self> {
        Self::with_feed(Some(Box::new(start)))
    }

    fn with_feed(feed: Option<Box<dyn Fn(Weak<Changes>) + Send + Sync>>) -> Arc<Self> {
        Arc::new(Changes {
            origin: uuid::Uuid::new_v4().simple().to_string(),
            watched: Mutex::default(),
            feed,
            feed_started: Once::new(),
            stopped: Arc::new(Notify::new()),
        })
    }

    /// Registers interest in `key`; the returned [`Watch`] is woken by every announcement
    /// for it from now on.
    pub fn watch(self: &Arc<Self>, key: &str) -> Watch {
        if let Some(start) = &self.feed {
            self.feed_started.call_once(|| start(Arc::downgrade(self)));
        }
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = match watched.get_mut(key) {
            Some(entry) => {
                entry.watchers += 1;
                entry.seen.subscribe()
            }
            None => {
                let (seen, receiver) = watch::channel(Seen::default());
                watched.insert(key.into(), Watched { seen, watchers: 1 });
                receiver
            }
        };
        let resyncs = receiver.borrow().resyncs;
        Watch {
            changes: self.clone(),
            key: key.into(),
            resyncs,
            receiver,
        }
    }

    /// `key` changed; `finished`: for good (an execution reached its final status).
    pub fn announce(&self, key: &str, finished: bool) {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = watched.get(key) {
            entry.seen.send_modify(|seen| seen.finished |= finished);
        }
    }

    /// Wakes every watcher to read the store again: announcements may have been lost.
    pub fn resync(&self) {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        for entry in watched.values() {
            entry.seen.send_modify(|seen| seen.resyncs += 1);
        }
    }

    /// The messages that tell the other processes about `changes` (key, finished): each
    /// under [`MAX_MESSAGE`] bytes, none if there is nothing to say.
    pub(crate) fn messages<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Vec<String> {
        let mut messages = Vec::new();
        let mut message = String::new();
        for (key, finished) in changes {
            if message.len() + key.len() + 3 > MAX_MESSAGE {
                messages.push(std::mem::take(&mut message));
            }
            if message.is_empty() {
                message.push_str(&self.origin);
            }
            message.push('\n');
            message.push(if finished { 'F' } else { 'C' });
            message.push_str(key);
        }
        if !message.is_empty() {
            messages.push(message);
        }
        messages
    }

    /// Announces what a message from another process says (this process's own are
    /// skipped: they were announced when written).
    pub(crate) fn receive(&self, message: &str) {
        let mut lines = message.split('\n');
        if lines.next() == Some(self.origin.as_str()) {
            return;
        }
        for line in lines {
            match line.split_at_checked(1) {
                Some(("F", key)) => self.announce(key, true),
                Some(("C", key)) => self.announce(key, false),
                _ => {}
            }
        }
    }

    /// Resolves when the store that made these changes is gone: a listening task's cue to
    /// close its connection.
    pub(crate) fn stopped(&self) -> Arc<Notify> {
        self.stopped.clone()
    }

    fn forget(&self, key: &str) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = watched.get_mut(key) {
            entry.watchers -= 1;
            if entry.watchers == 0 {
                watched.remove(key);
            }
        }
    }
}

/// How long a listening task waits before connecting again after its connection broke.
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `listen_once` (which listens on a connection of its own until it fails, and says
/// why) again and again until the store is dropped. Whatever was sent while a connection was
/// down is lost, so after each failure every watcher reads the store again.
pub(crate) async fn keep_listening<F, Fut>(changes: Weak<Changes>, channel: String, listen_once: F)
where
    F: Fn(Weak<Changes>) -> Fut,
    Fut: std::future::Future<Output = crate::StoreError>,
{
    let Some(stopped) = changes.upgrade().map(|c| c.stopped()) else {
        return;
    };
    loop {
        tokio::select! {
            () = stopped.notified() => return,
            error = listen_once(changes.clone()) => {
                let Some(changes) = changes.upgrade() else { return };
                changes.resync();
                tracing::warn!(%error, channel, "listening for changes failed; connecting again");
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        // `notify_one` keeps the wake-up for a task that is not waiting yet.
        self.stopped.notify_one();
    }
}

/// Interest in one key; see [`Changes::watch`].
pub struct Watch {
    changes: Arc<Changes>,
    key: Arc<str>,
    receiver: watch::Receiver<Seen>,
    /// Resyncs already seen by [`Self::finished`].
    resyncs: u64,
}

impl Watch {
    /// Resolves at the next announcement (or resync) for the key since the last call, or
    /// since the watch began.
    pub async fn changed(&mut self) {
        // The sender lives as long as this watch's registration.
        let _ = self.receiver.changed().await;
    }

    /// Whether anything was announced (or resynced) for the key since the watch began.
    pub fn has_changed(&self) -> bool {
        self.receiver.has_changed().unwrap_or(true)
    }

    /// Resolves once the key is announced finished, or announcements may have been lost:
    /// either way, time to read the store.
    pub async fn finished(&mut self) {
        let resyncs = self.resyncs;
        let seen = self
            .receiver
            .wait_for(|seen| seen.finished || seen.resyncs != resyncs)
            .await
            .map(|seen| *seen);
        if let Ok(seen) = seen {
            self.resyncs = seen.resyncs;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.changes.forget(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn resolves(future: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), future)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_watch_wakes_for_its_key_only_and_only_once_finished_when_asked() {
        let changes = Changes::local();
        let mut watch = changes.watch("a");
        changes.announce("b", true);
        assert!(!resolves(watch.changed()).await);
        changes.announce("a", false);
        assert!(resolves(watch.changed()).await);
        assert!(!resolves(watch.finished()).await);
        changes.announce("a", true);
        assert!(resolves(watch.finished()).await);
    }

    #[tokio::test]
    async fn an_announcement_between_registering_and_waiting_is_not_lost() {
        let changes = Changes::local();
        let mut watch = changes.watch("a");
        changes.announce("a", true);
        assert!(resolves(watch.finished()).await);
    }

    #[tokio::test]
    async fn a_resync_wakes_every_watcher() {
        let changes = Changes::local();
        let mut a = changes.watch("a");
        let mut b = changes.watch("b");
        changes.resync();
        assert!(resolves(a.finished()).await);
        assert!(resolves(b.changed()).await);
        // Seen once: the next wait waits again.
        assert!(!resolves(a.finished()).await);
    }

    #[tokio::test]
    async fn keys_are_forgotten_when_their_last_watch_goes() {
        let changes = Changes::local();
        let first = changes.watch("a");
        let second = changes.watch("a");
        drop(first);
        assert_eq!(changes.watched.lock().unwrap().len(), 1);
        drop(second);
        assert!(changes.watched.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn messages_carry_changes_to_other_processes_but_not_back() {
        let here = Changes::local();
        let there = Changes::local();
        let mut finished = there.watch("x1");
        let mut changed = there.watch("x2");
        let mut own = here.watch("x1");
        let long = "k".repeat(400);
        let keys: Vec<String> = (0..40).map(|i| format!("{long}{i}")).collect();
        let mut all: Vec<(&str, bool)> = vec![("x1", true), ("x2", false)];
        all.extend(keys.iter().map(|k| (k.as_str(), false)));
        let messages = here.messages(all);
        assert!(
            messages.len() > 1,
            "40 keys of 400 bytes fill several messages"
        );
        assert!(messages.iter().all(|m| m.len() <= MAX_MESSAGE));
        for message in &messages {
            there.receive(message);
            here.receive(message);
        }
        assert!(resolves(finished.finished()).await);
        assert!(resolves(changed.changed()).await);
        assert!(!resolves(changed.finished()).await);
        assert!(
            !resolves(own.changed()).await,
            "a process skips its own messages"
        );
    }
}
