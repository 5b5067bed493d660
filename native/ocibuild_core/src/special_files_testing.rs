//! Test helpers for the rule "never block on a special file", shared by every module that
//! opens a user-named path (layer files, tarballs, save targets, `SSL_CERT_FILE`).

use std::path::Path;
use std::time::Duration;

/// Make a FIFO at `path`: opening it for reading blocks until a writer comes, which is the
/// hang the tests guard against.
pub fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

/// `f` on another thread, failing the test (rather than hanging it) after 10 s.
pub fn within_bound<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()));
    rx.recv_timeout(Duration::from_secs(10))
        .expect("blocked on a special file")
}
