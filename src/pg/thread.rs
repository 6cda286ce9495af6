//! Helper threads of the worker (HTTP requests to PagerDuty): they never touch PostgreSQL, and
//! PostgreSQL's signal handlers must keep running on the worker's own thread only.

/// Spawns `f` on a named thread with every signal blocked (threads inherit the signal mask).
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    // SAFETY: pthread_sigmask on the calling thread with valid set pointers; restored below.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let spawned = std::thread::Builder::new().name(name.into()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        spawned
    }
}
