//! The process's own `SSL_CERT_FILE` naming a FIFO (set in the shell that started the VM, as
//! `SSL_CERT_FILE=<(...)` does) must not block building the HTTP client: rustls-native-certs
//! opened it without a look. Its own test binary: it sets the process environment, which no
//! other test may see.

use std::ffi::OsString;
use std::sync::mpsc;
use std::time::Duration;

use ocibuild_core::registry::transport::tls_config;
use ocibuild_core::registry::Environment;

#[test]
fn a_fifo_in_the_process_ssl_cert_file_is_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.pem");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // The only test in this binary: no other thread reads the environment meanwhile.
    std::env::set_var("SSL_CERT_FILE", &fifo);
    std::env::set_var("SSL_CERT_DIR", dir.path());

    // The process's variable alone (the VM's copy unset): the system roots still load.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(tls_config(&Environment::default()).is_ok());
    });
    let built = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("blocked on the FIFO in SSL_CERT_FILE");
    assert!(
        built,
        "the system roots and SSL_CERT_DIR still make a config"
    );

    // The same FIFO passed in: refused with the variable's name, still without blocking.
    let env = Environment::from_pairs([("SSL_CERT_FILE".to_string(), OsString::from(&fifo))]);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(tls_config(&env).map(|_| ()).map_err(|e| e.to_string()));
    });
    let refused = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("blocked on the FIFO in SSL_CERT_FILE");
    assert!(
        matches!(&refused, Err(why) if why.contains("SSL_CERT_FILE")),
        "{refused:?}"
    );
}
