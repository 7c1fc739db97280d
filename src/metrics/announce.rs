//! The thread that announces a process serving metrics on the processes stream (see
//! `broker::processes`), at once and then every `ANNOUNCE_EVERY`, on a session of its own: off the
//! task path (in a worker, the metrics process runs it, never a child). Stopped when dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::processes::{announce, Announced, ANNOUNCE_EVERY};
use crate::broker::Session;
use crate::config::Settings;

pub struct Announcer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Announcer {
    pub fn start(settings: Settings, mut record: Announced) -> std::io::Result<Announcer> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("ebats-announce".into()).spawn(move || {
            let mut session = None;
            let mut failing = false;
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                record.at_ms = crate::wire::now_ms();
                let r = match session.as_mut() {
                    Some(s) => Ok(s),
                    None => Session::new().map(|s| session.insert(s)),
                }
                .and_then(|s| announce(s, &settings, &record));
                match r {
                    // One line per burst of failures, not one per attempt.
                    Err(e) if !failing => {
                        crate::log::error(&format!("cannot announce this process on the processes stream: {e}"));
                        failing = true;
                    }
                    Err(_) => {}
                    Ok(()) => failing = false,
                }
                if failing {
                    if let Some(s) = session.as_mut() {
                        s.disconnect();
                    }
                }
                while !flag.load(Ordering::Relaxed) && started.elapsed() < ANNOUNCE_EVERY {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if let Some(mut s) = session {
                s.close();
            }
        })?;
        Ok(Announcer { stop, thread: Some(thread) })
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
