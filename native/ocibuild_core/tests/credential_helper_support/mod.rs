//! Fake `docker-credential-*` helpers (shell scripts in a temp dir) for the credential
//! helper tests, and waits for the processes they start to be gone.

#![allow(dead_code)] // each test binary uses its own part

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ocibuild_core::registry::{CredentialSources, Credentials};
use ocibuild_core::Error;

/// What the helpers answer with; no error text may ever contain it.
pub const SECRET: &str = "Zq-s3cret-never-shown";

/// A valid answer, as `printf` prints it.
pub const ANSWER: &str =
    r#"{"ServerURL":"ghcr.io","Username":"alice","Secret":"Zq-s3cret-never-shown"}"#;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub sources: CredentialSources,
}

impl Fixture {
    /// A docker config whose `credsStore` is the helper `test`, whose script runs `body`.
    pub fn with_helper(body: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-test");
        std::fs::write(&helper, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"credsStore": "test"}"#).unwrap();
        let sources = CredentialSources {
            docker_config: Some(config),
            podman_auth: Vec::new(),
            helper_path: Some(bin.into_os_string()),
            helper_timeout: Duration::from_secs(20),
            helper_env: Vec::new(),
        };
        Fixture { dir, sources }
    }

    pub fn lookup(&self) -> ocibuild_core::Result<Credentials> {
        self.sources.lookup("ghcr.io")
    }

    /// A file in the fixture's dir, for scripts to write pids or notes into.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn pids(&self, name: &str) -> Vec<i32> {
        std::fs::read_to_string(self.file(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }
}

/// The error's `why`, after checking it is the helper's and quotes no secret in any form.
pub fn helper_error(result: ocibuild_core::Result<Credentials>) -> String {
    let err = match result {
        Err(e) => e,
        Ok(c) => panic!("expected an error, got {c:?}"),
    };
    for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
        assert!(!shown.contains(SECRET), "the secret leaked: {shown}");
        assert!(!shown.contains("warning"), "helper output leaked: {shown}");
    }
    match err {
        Error::Credentials { source_name, why } => {
            assert_eq!(source_name, "docker-credential-test");
            why
        }
        other => panic!("expected a credentials error, got {other:?}"),
    }
}

/// A helper that writes its pids into `pids` and then never answers, and the error the
/// lookup gives. The timeout grows until the helper had time to record its pids, so a slow
/// machine makes the test slower, never wrong.
pub fn hanging_helper(body: &str) -> (Fixture, String) {
    for timeout in [1, 4, 16] {
        let mut f = Fixture::with_helper(&body.replace("PIDS", "\"$(dirname \"$0\")/../pids\""));
        f.sources.helper_timeout = Duration::from_secs(timeout);
        let started = Instant::now();
        let why = helper_error(f.lookup());
        assert!(
            started.elapsed() < Duration::from_secs(timeout + 10),
            "{why}"
        );
        if f.pids("pids").len() >= 2 {
            return (f, why);
        }
    }
    panic!("the helper never recorded its pids");
}

/// Wait, with a bound, until `pid` no longer runs (gone, or a zombie nobody reaped yet).
pub fn wait_until_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_running(pid: i32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        // SAFETY: signal 0 only checks that the process exists.
        return unsafe { libc::kill(pid, 0) } == 0;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
