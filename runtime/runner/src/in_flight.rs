//! The calls and timers one execution has in flight, polled by its drive task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};

/// A `FuturesUnordered` that is not one while it would hold a single future.
///
/// Whenever one poll of a `FuturesUnordered` has polled every future it holds and all are
/// pending, it wakes its task again before returning, so that futures which keep waking
/// themselves cannot starve the task's neighbours. Holding one future, as a sequential
/// workflow does at every step, that is every poll: each wake of the call woke the drive task
/// twice, and tokio treats a task woken while it runs as a yield, queueing it behind the
/// others and waking an idle worker to take it. On a worker thread that made every call of a
/// sequential workflow about 70 µs slower on the benchmark machine. A lone future is
/// therefore polled directly; a second one moves both into the set.
pub(super) struct InFlight<F> {
    /// Only while `set` is empty.
    lone: Option<F>,
    set: FuturesUnordered<F>,
}

impl<F: Future + Unpin> InFlight<F> {
    pub(super) fn new() -> Self {
        InFlight {
            lone: None,
            set: FuturesUnordered::new(),
        }
    }

    /// Starts tracking `future`; it is first polled by the next [`next`](Self::next).
    pub(super) fn push(&mut self, future: F) {
        if self.lone.is_none() && self.set.is_empty() {
            self.lone = Some(future);
            return;
        }
        if let Some(lone) = self.lone.take() {
            self.set.push(lone);
        }
        self.set.push(future);
    }

    /// Whether nothing is in flight.
    pub(super) fn is_empty(&self) -> bool {
        self.lone.is_none() && self.set.is_empty()
    }

    /// The output of the next future to finish; `None` once nothing is in flight.
    pub(super) async fn next(&mut self) -> Option<F::Output> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        match &mut self.lone {
            Some(future) => {
                let output = std::task::ready!(Pin::new(future).poll(cx));
                self.lone = None;
                Poll::Ready(Some(output))
            }
            None => self.set.poll_next_unpin(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use futures_util::FutureExt;
    use tokio::sync::oneshot;

    use super::*;

    /// Counts how often it is woken.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    type Boxed = Pin<Box<dyn Future<Output = u32> + Send>>;

    fn answer(rx: oneshot::Receiver<u32>) -> Boxed {
        Box::pin(rx.map(|r| r.unwrap()))
    }

    #[test]
    fn a_lone_pending_future_does_not_wake_its_task() {
        let wakes = Arc::new(Wakes::default());
        let waker = Arc::clone(&wakes).into();
        let mut cx = Context::from_waker(&waker);
        let (tx, rx) = oneshot::channel();
        let mut in_flight: InFlight<Boxed> = InFlight::new();
        in_flight.push(answer(rx));
        assert!(in_flight.poll_next(&mut cx).is_pending());
        assert!(in_flight.poll_next(&mut cx).is_pending());
        // A FuturesUnordered would have woken the task after each of those polls.
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        tx.send(7).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(in_flight.poll_next(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(in_flight.poll_next(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn several_futures_finish_in_the_order_they_are_ready() {
        let waker = Arc::new(Wakes::default()).into();
        let mut cx = Context::from_waker(&waker);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        let mut in_flight: InFlight<Boxed> = InFlight::new();
        let mut receivers = receivers.into_iter();
        in_flight.push(answer(receivers.next().unwrap()));
        assert!(in_flight.poll_next(&mut cx).is_pending());
        // The first one has been polled on its own; the next ones join it in the set.
        for rx in receivers {
            in_flight.push(answer(rx));
        }
        assert!(in_flight.poll_next(&mut cx).is_pending());
        let mut senders: Vec<_> = senders.into_iter().map(Some).collect();
        for (i, value) in [(2, 30), (0, 10), (1, 20)] {
            senders[i].take().unwrap().send(value).unwrap();
            assert_eq!(in_flight.poll_next(&mut cx), Poll::Ready(Some(value)));
        }
        assert_eq!(in_flight.poll_next(&mut cx), Poll::Ready(None));
        // Empty again, it takes a lone future again.
        let (tx, rx) = oneshot::channel();
        in_flight.push(answer(rx));
        tx.send(4).unwrap();
        assert_eq!(in_flight.poll_next(&mut cx), Poll::Ready(Some(4)));
    }
}
