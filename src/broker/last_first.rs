//! Awaiting many broker futures that complete in the order they were started (frames written in
//! the order they were queued, confirms in the order of the delivery tags): the last one first,
//! then the others, which by then are done. The waiting thread is woken once for the lot instead of
//! once per message; a future that completes out of order is still awaited, only later.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Polls `f` once without asking to be woken: what it waits for, when it comes, wakes nobody.
/// For the first poll of a publish, which queues its frames; its completion is awaited later.
pub fn poll_quietly<F: Future + ?Sized>(f: Pin<&mut F>) -> Option<F::Output> {
    match f.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Awaits every future of `fs`, the last first, and hands each output to `settled` with its index
/// as it comes (the last, then the others in order).
pub async fn last_first<F: Future + Unpin>(fs: &mut [F], mut settled: impl FnMut(usize, F::Output)) {
    let Some(last) = fs.len().checked_sub(1) else { return };
    settled(last, (&mut fs[last]).await);
    for (i, f) in fs[..last].iter_mut().enumerate() {
        settled(i, f.await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_last_first_then_the_others_in_order() {
        let mut fs: Vec<_> = (0..4).map(|i| Box::pin(async move { i * 10 })).collect();
        let got = RefCell::new(Vec::new());
        futures_lite::future::block_on(last_first(&mut fs, |i, v| got.borrow_mut().push((i, v))));
        assert_eq!(got.into_inner(), [(3, 30), (0, 0), (1, 10), (2, 20)]);
        let mut none: Vec<std::future::Ready<u8>> = Vec::new();
        futures_lite::future::block_on(last_first(&mut none, |_, _| panic!("nothing to settle")));
    }

    #[test]
    fn completions_out_of_order_are_awaited_too() {
        let (txs, mut rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| tokio::sync::oneshot::channel::<u8>()).unzip();
        let h = std::thread::spawn(move || {
            // The last completes first, the first one last.
            for (i, tx) in txs.into_iter().enumerate().rev() {
                std::thread::sleep(Duration::from_millis(5));
                tx.send(i as u8).unwrap();
            }
        });
        let got = RefCell::new(Vec::new());
        let r = crate::broker::park::wait(
            last_first(&mut rxs, |i, v| got.borrow_mut().push((i, v.unwrap()))),
            Duration::from_secs(5),
        );
        h.join().unwrap();
        assert!(r.is_ok());
        assert_eq!(got.into_inner(), [(2, 2), (0, 0), (1, 1)]);
    }

    #[test]
    fn a_quiet_poll_registers_no_waker() {
        let (tx, mut rx) = tokio::sync::oneshot::channel::<u8>();
        assert_eq!(poll_quietly(Pin::new(&mut rx)), None);
        tx.send(7).unwrap();
        assert_eq!(poll_quietly(Pin::new(&mut rx)).map(Result::unwrap), Some(7));
        // A poll with a waker, for comparison: the completion wakes it.
        let (tx, mut rx) = tokio::sync::oneshot::channel::<u8>();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(Pin::new(&mut rx).poll(&mut Context::from_waker(&waker)).is_pending());
        tx.send(1).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
