//! Credential helpers that misbehave: their exit status counts, their output is never
//! quoted, and a hung or runaway helper is stopped with everything it started.

mod credential_helper_support;

use std::time::{Duration, Instant};

use credential_helper_support::*;
use ocibuild_core::registry::{CredentialSources, Credentials, Environment};

fn alice() -> Credentials {
    Credentials::basic("alice", SECRET)
}

#[test]
fn a_helper_that_answers_gets_the_server_url_on_stdin() {
    let f = Fixture::with_helper(&format!(
        r#"[ "$1" = get ] || exit 3; read -r url; [ "$url" = ghcr.io ] || exit 4; printf '{ANSWER}'"#
    ));
    assert_eq!(f.lookup().unwrap(), alice());
}

#[test]
fn valid_json_then_exit_1_is_an_error() {
    let f = Fixture::with_helper(&format!("printf '{ANSWER}'; exit 1"));
    let why = helper_error(f.lookup());
    assert!(why.contains("exit status 1"), "{why}");
}

#[test]
fn valid_json_then_a_warning_line_is_an_error_without_the_secret() {
    let f = Fixture::with_helper(&format!(
        "printf '{ANSWER}\\nwarning: the keychain is slow today\\n'"
    ));
    let why = helper_error(f.lookup());
    assert!(why.contains("invalid JSON"), "{why}");
}

#[test]
fn stderr_noise_with_exit_status_0_is_fine() {
    let f = Fixture::with_helper(&format!("echo 'warning: slow' >&2; printf '{ANSWER}'"));
    assert_eq!(f.lookup().unwrap(), alice());
}

#[test]
fn an_answer_without_a_secret_is_an_error() {
    let f = Fixture::with_helper(r#"printf '{"ServerURL":"ghcr.io","Username":"alice"}'"#);
    let why = helper_error(f.lookup());
    assert!(why.contains("without a Secret"), "{why}");
}

#[test]
fn a_helper_killed_by_a_signal_is_an_error() {
    let f = Fixture::with_helper(&format!("printf '{ANSWER}'; kill -9 $$"));
    let why = helper_error(f.lookup());
    assert!(why.contains("exit status 137"), "{why}");
}

#[test]
fn a_helper_that_never_reads_stdin_still_counts() {
    let f = Fixture::with_helper(&format!("exec 0<&-; printf '{ANSWER}'"));
    assert_eq!(f.lookup().unwrap(), alice());
}

#[test]
fn a_hanging_helper_is_stopped_with_its_children() {
    let (f, why) = hanging_helper("echo $$ >> PIDS; sleep 300 & echo $! >> PIDS; wait");
    assert!(why.contains("did not answer within"), "{why}");
    for pid in f.pids("pids") {
        wait_until_gone(pid);
    }
}

#[test]
fn a_helper_whose_child_keeps_its_output_open_is_stopped() {
    // The helper answers and exits, but a child it left behind holds stdout open.
    let (f, why) = hanging_helper(&format!(
        "echo $$ >> PIDS; sleep 300 & echo $! >> PIDS; printf '{ANSWER}'"
    ));
    assert!(why.contains("did not answer within"), "{why}");
    for pid in f.pids("pids") {
        wait_until_gone(pid);
    }
}

#[test]
fn endless_output_is_cut_off_and_the_helper_stopped() {
    let f = Fixture::with_helper(&format!(
        "echo $$ > \"$(dirname \"$0\")/../pids\"; exec yes '{ANSWER}'"
    ));
    let started = Instant::now();
    let why = helper_error(f.lookup());
    assert!(why.contains("more than 64 KiB"), "{why}");
    assert!(started.elapsed() < Duration::from_secs(15));
    for pid in f.pids("pids") {
        wait_until_gone(pid);
    }
}

#[test]
fn endless_stderr_is_cut_off_too() {
    let f = Fixture::with_helper("exec yes 'warning: Zq-s3cret-never-shown' >&2");
    let why = helper_error(f.lookup());
    assert!(why.contains("more than 64 KiB"), "{why}");
}

#[test]
fn output_just_under_the_cap_is_read_whole() {
    // A 60 KiB answer: big, but within the cap, spread over many pipe reads.
    let f = Fixture::with_helper(&format!(
        r#"pad=$(head -c 61000 /dev/zero | tr '\0' ' '); printf '%s{ANSWER}' "$pad""#
    ));
    assert_eq!(f.lookup().unwrap(), alice());
}

#[test]
fn credentials_not_found_falls_through_to_anonymous() {
    let f = Fixture::with_helper("echo 'credentials not found in native keychain'; exit 1");
    assert_eq!(f.lookup().unwrap(), Credentials::Anonymous);
}

#[test]
fn helpers_run_with_the_environment_they_were_found_with() {
    // Inside the BEAM the Environment is the VM's view (os:putenv), not the process's.
    let f = Fixture::with_helper(&format!(
        r#"[ "$HOME" = /ocibuild-test/home ] && [ "$PATH" = "${{0%/*}}" ] || exit 5
printf '{ANSWER}'"#
    ));
    let bin = f.sources.helper_path.clone().unwrap();
    let env = Environment::from_pairs([
        ("HOME".to_string(), "/ocibuild-test/home".into()),
        ("PATH".to_string(), bin),
        ("DOCKER_CONFIG".to_string(), f.dir.path().into()),
    ]);
    let sources = CredentialSources::from_environment(&env);
    assert_eq!(sources.lookup("ghcr.io").unwrap(), alice());
}
