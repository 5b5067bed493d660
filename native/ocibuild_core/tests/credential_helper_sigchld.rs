//! Inside the BEAM SIGCHLD is ignored, so the kernel reaps children itself and `waitpid`
//! answers ECHILD. This binary sets the same disposition before every test and shows that
//! a credential helper's exit status is still learned, and a hung one still stopped.

mod credential_helper_support;

use std::process::Command;
use std::sync::Once;

use credential_helper_support::*;
use ocibuild_core::registry::Credentials;

fn ignore_sigchld_like_the_beam() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal disposition to SIG_IGN installs no handler code.
        let previous = unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        assert_ne!(previous, libc::SIG_ERR);
    });
}

#[test]
fn waitpid_really_cannot_see_the_status_here() {
    ignore_sigchld_like_the_beam();
    let err = Command::new("/bin/sh")
        .args(["-c", "exit 7"])
        .status()
        .expect_err("with SIGCHLD ignored there is no status to wait for");
    assert_eq!(err.raw_os_error(), Some(libc::ECHILD));
}

#[test]
fn exit_status_1_after_valid_json_is_still_an_error() {
    ignore_sigchld_like_the_beam();
    let f = Fixture::with_helper(&format!("printf '{ANSWER}'; exit 1"));
    let why = helper_error(f.lookup());
    assert!(why.contains("exit status 1"), "{why}");
}

#[test]
fn exit_status_0_still_gives_the_credentials() {
    ignore_sigchld_like_the_beam();
    let f = Fixture::with_helper(&format!("printf '{ANSWER}'"));
    assert_eq!(f.lookup().unwrap(), Credentials::basic("alice", SECRET));
}

#[test]
fn the_helper_can_wait_for_its_own_children() {
    // Helpers such as docker-credential-pass run programs and check how they exited.
    ignore_sigchld_like_the_beam();
    let f = Fixture::with_helper(&format!(
        "sh -c 'exit 5'; [ $? = 5 ] || exit 9; printf '{ANSWER}'"
    ));
    assert_eq!(f.lookup().unwrap(), Credentials::basic("alice", SECRET));
}

#[test]
fn a_hanging_helper_is_still_stopped_with_its_children() {
    ignore_sigchld_like_the_beam();
    let (f, why) = hanging_helper("echo $$ >> PIDS; sleep 300 & echo $! >> PIDS; wait");
    assert!(why.contains("did not answer within"), "{why}");
    for pid in f.pids("pids") {
        wait_until_gone(pid);
    }
}
