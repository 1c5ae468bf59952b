//! Scheduling classes of the log's consumers. The ack path (HTTP, the log writer) and the
//! pipeline answer within milliseconds; the warehouse materializer and the recommendation
//! consumer and trainer have a budget of seconds. On a machine whose cores are all busy, the
//! scheduler should serve the first group first and let the second catch up afterwards.

/// Nice value of background consumers: under CFS a nice-10 thread gets about a tenth of the
/// CPU share of a nice-0 thread competing for the same core, and all of an idle core.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread (and threads it spawns later) to [`BACKGROUND_NICE`], unless it
/// already runs at that priority or lower. On Linux the nice value is per thread; elsewhere this
/// does nothing. Best effort: a refusal is logged and the thread runs on as it was.
pub fn run_in_background() {
    #[cfg(target_os = "linux")]
    {
        let thread = Some(rustix::thread::gettid());
        let lowered = rustix::process::getpriority_process(thread).and_then(|nice| {
            if nice < BACKGROUND_NICE {
                rustix::process::setpriority_process(thread, BACKGROUND_NICE)
            } else {
                Ok(())
            }
        });
        if let Err(error) = lowered {
            tracing::warn!(%error, "could not lower the priority of a background consumer thread");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn current_nice() -> rustix::io::Result<i32> {
        rustix::process::getpriority_process(Some(rustix::thread::gettid()))
    }

    #[test]
    fn background_threads_and_their_children_run_at_the_background_nice_value() {
        let before = current_nice().unwrap();
        let inside = std::thread::spawn(|| {
            run_in_background();
            let own = current_nice().unwrap();
            let child = std::thread::spawn(current_nice).join().unwrap().unwrap();
            (own, child)
        })
        .join()
        .unwrap();
        let expected = before.max(BACKGROUND_NICE);
        assert_eq!(inside, (expected, expected));
        assert_eq!(
            current_nice().unwrap(),
            before,
            "other threads keep their priority"
        );
    }
}
