//! Running one credential helper with a deadline, an output cap, and an exit status we can
//! trust even inside the BEAM.
//!
//! The BEAM sets SIGCHLD to SIG_IGN, so the kernel reaps our children itself and `waitpid`
//! answers ECHILD instead of a status. So the helper runs under a tiny `/bin/sh` wrapper
//! whose own SIGCHLD disposition is reset to the default: the shell waits for the helper
//! like any shell does and writes `$?` to a pipe of its own (fd 3). Reading that pipe, with
//! the helper's stdout and stderr, gives the status without ever needing `waitpid`. The
//! helper does not get fd 3, so it cannot forge the status, and end-of-file on fd 3 means the
//! wrapper is gone.
//!
//! The pipes are read and written asynchronously (tokio's pipe types, registered with the
//! runtime's reactor), so waiting costs no thread and no polling, and the deadline is a tokio
//! timeout around the whole exchange. tokio's own process support is not used: it installs
//! a SIGCHLD handler, which would change the BEAM's disposition for the whole VM.
//!
//! The wrapper leads a new process group: on timeout or runaway output the whole group
//! (wrapper, helper, whatever the helper started) is killed.
//!
//! ```no_run
//! # use ocibuild_core::registry::credentials::helper_process::{run, Limits};
//! # use std::{path::Path, time::Duration};
//! # async fn f() -> Result<(), ocibuild_core::registry::credentials::helper_process::Failure> {
//! let limits = Limits { timeout: Duration::from_secs(30), max_output: 64 * 1024 };
//! let helper = Path::new("/usr/bin/docker-credential-pass");
//! let done = run(helper, "get", b"ghcr.io", &[], limits).await?;
//! println!("exit status {}", done.status);
//! # Ok(()) }
//! ```

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

/// `$0` is the helper, `$@` its arguments. The helper's fd 3 is closed so only the shell
/// can write the status; `exit 0` because the shell's own status cannot be collected.
const WRAPPER: &str = r#""$0" "$@" 3>&-; echo "$?" >&3; exit 0"#;

/// The descriptor the wrapper reports the status on.
const STATUS_FD: RawFd = 3;

/// The status line is at most "255\n"; anything longer is not from our wrapper.
const MAX_STATUS_BYTES: usize = 16;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long the helper may take, from spawn to the end of its output.
    pub timeout: Duration,
    /// The most bytes kept of stdout and of stderr, each.
    pub max_output: usize,
}

/// A helper that ran to the end.
#[derive(Debug)]
pub struct Finished {
    /// The shell's `$?`: the exit code, or 128 + the signal number that killed the helper.
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a helper did not run to the end. Never holds any of the helper's output.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot run the credential helper: {0}")]
    Spawn(io::Error),
    #[error("the credential helper did not answer within {} s and was stopped", .0.as_secs_f32())]
    TimedOut(Duration),
    #[error("the credential helper wrote more than {0} bytes and was stopped")]
    OutputTooLarge(usize),
    #[error("the credential helper ended without reporting an exit status")]
    NoStatus,
    #[error("reading from the credential helper: {0}")]
    Io(io::Error),
}

/// Run `program arg` with `input` on its stdin and `env` added to its environment, and
/// collect its status and output. Needs a tokio runtime with IO and time enabled.
pub async fn run(
    program: &Path,
    arg: &str,
    input: &[u8],
    env: &[(OsString, OsString)],
    limits: Limits,
) -> Result<Finished, Failure> {
    let (status_read, status_write) = status_pipe().map_err(Failure::Spawn)?;
    let mut child = spawn(program, arg, env, &status_write).map_err(Failure::Spawn)?;
    // Only the wrapper may hold the write end, or end-of-file would never come.
    drop(status_write);
    let exchange = collect(&mut child, status_read, input, limits);
    let outcome = match tokio::time::timeout(limits.timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => Err(Failure::TimedOut(limits.timeout)),
    };
    if outcome.is_err() {
        kill_group(&child);
    }
    reap(child).await;
    outcome
}

/// Wait for the wrapper, which has exited (its fd 3 closed) or was just killed, so this
/// returns at once; on a blocking thread all the same, as `wait` is a blocking call. Under an
/// ignored SIGCHLD it answers ECHILD, which is fine: the kernel reaped it.
async fn reap(mut child: Child) {
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
}

fn spawn(
    program: &Path,
    arg: &str,
    env: &[(OsString, OsString)],
    status_write: &OwnedFd,
) -> io::Result<Child> {
    let status_fd = status_write.as_raw_fd();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(WRAPPER)
        .arg(runnable_path(program))
        .arg(arg)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls (signal, dup2) are made,
    // and the closure touches nothing but a copied integer.
    unsafe {
        command.pre_exec(move || {
            // An ignored SIGCHLD survives exec; the shell needs the default to wait.
            if libc::signal(libc::SIGCHLD, libc::SIG_DFL) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            // dup2 onto a different number also clears close-on-exec on the copy.
            if libc::dup2(status_fd, STATUS_FD) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// A path `sh` runs as is: one without a slash would be searched for on PATH instead.
fn runnable_path(program: &Path) -> PathBuf {
    if program.components().count() > 1 || program.has_root() {
        program.to_path_buf()
    } else {
        Path::new(".").join(program)
    }
}

/// A close-on-exec pipe whose write end is above fd 3, so `dup2` onto 3 always makes a
/// fresh, inheritable copy and never closes the original.
fn status_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = io::pipe()?;
    // SAFETY: fcntl on a descriptor we own; the result is a new descriptor we then own.
    let high = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_DUPFD_CLOEXEC, STATUS_FD + 1) };
    if high == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `high` was just returned by fcntl and nothing else owns it.
    let write = unsafe { OwnedFd::from_raw_fd(high) };
    Ok((read.into(), write))
}

/// Everything the helper says, and its status, to end-of-file on all three pipes. Its stdin
/// is fed alongside but does not hold things up: a helper may exit without reading it.
async fn collect(
    child: &mut Child,
    status_read: OwnedFd,
    input: &[u8],
    limits: Limits,
) -> Result<Finished, Failure> {
    let stdin = child
        .stdin
        .take()
        .map(sender)
        .transpose()
        .map_err(Failure::Io)?;
    let status = receiver(status_read).map_err(Failure::Io)?;
    let stdout = child
        .stdout
        .take()
        .map(receiver)
        .transpose()
        .map_err(Failure::Io)?;
    let stderr = child
        .stderr
        .take()
        .map(receiver)
        .transpose()
        .map_err(Failure::Io)?;
    let outputs = async {
        let too_large = || Failure::OutputTooLarge(limits.max_output);
        tokio::try_join!(
            async {
                read_capped(Some(status), MAX_STATUS_BYTES)
                    .await?
                    .ok_or(Failure::NoStatus)
            },
            async {
                read_capped(stdout, limits.max_output)
                    .await?
                    .ok_or_else(too_large)
            },
            async {
                read_capped(stderr, limits.max_output)
                    .await?
                    .ok_or_else(too_large)
            },
        )
    };
    let feed = feed(stdin, input);
    tokio::pin!(outputs, feed);
    let mut fed = false;
    let (status, stdout, stderr) = loop {
        tokio::select! {
            collected = &mut outputs => break collected?,
            () = &mut feed, if !fed => fed = true,
        }
    };
    let status = std::str::from_utf8(&status)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(Failure::NoStatus)?;
    Ok(Finished {
        status,
        stdout,
        stderr,
    })
}

/// Write `input` to the helper's stdin, then close it so the helper sees end-of-file.
async fn feed(stdin: Option<pipe::Sender>, input: &[u8]) {
    if let Some(mut stdin) = stdin {
        // The helper closed its stdin without reading: its status will say more.
        let _ = stdin.write_all(input).await;
    }
}

/// A pipe read to end-of-file; `None` when more than `cap` bytes came.
async fn read_capped(pipe: Option<pipe::Receiver>, cap: usize) -> Result<Option<Vec<u8>>, Failure> {
    let mut bytes = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(Some(bytes));
    };
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return Ok(Some(bytes)),
            Ok(n) if bytes.len() + n > cap => return Ok(None),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Io(e)),
        }
    }
}

/// A pipe's read end, registered with the runtime (and made non-blocking by it).
fn receiver(fd: impl Into<OwnedFd>) -> io::Result<pipe::Receiver> {
    pipe::Receiver::from_owned_fd(fd.into())
}

fn sender(fd: impl Into<OwnedFd>) -> io::Result<pipe::Sender> {
    pipe::Sender::from_owned_fd(fd.into())
}

/// SIGKILL to the wrapper's process group, the helper and anything it started included.
fn kill_group(child: &Child) {
    // The wrapper leads its group, so the group id is its pid. The group cannot have been
    // recycled: the wrapper is either still running or exited after writing its status,
    // and a group id is not reused while any member lives.
    let group = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_in_a_relative_directory_is_not_searched_on_path() {
        // PATH entries may be relative ("bin", or "" for the current directory).
        assert_eq!(
            runnable_path(Path::new("docker-credential-x")),
            Path::new("./docker-credential-x")
        );
        for kept in ["bin/docker-credential-x", "/usr/bin/docker-credential-x"] {
            assert_eq!(runnable_path(Path::new(kept)), Path::new(kept));
        }
    }

    #[test]
    fn the_status_pipe_never_lands_on_the_status_fd() {
        let (read, write) = status_pipe().unwrap();
        assert!(write.as_raw_fd() > STATUS_FD);
        drop((read, write));
    }

    fn limits() -> Limits {
        Limits {
            timeout: Duration::from_secs(20),
            max_output: 1024,
        }
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("helper");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_missing_program_reports_the_shells_status() {
        let done = run(Path::new("/nonexistent/helper"), "get", b"", &[], limits())
            .await
            .unwrap();
        assert_eq!(done.status, 127);
    }

    // Input far beyond a pipe's buffer, to a helper that never reads it: the exchange ends
    // with the helper, not with the write.
    #[tokio::test]
    async fn unread_input_does_not_hold_up_a_helper_that_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let helper = script(dir.path(), "echo out; echo err >&2; exit 3");
        let input = vec![b'x'; 1 << 20];
        let done = run(&helper, "get", &input, &[], limits()).await.unwrap();
        assert_eq!(
            (done.status, done.stdout.as_slice(), done.stderr.as_slice()),
            (3, &b"out\n"[..], &b"err\n"[..])
        );
    }

    // Many helpers at once on a runtime with one worker: none waits for another's pipes.
    // Each helper answers only once all eight have started (or gives up with status 9), so
    // helpers run one after another would fail, whatever the machine's speed.
    #[tokio::test(flavor = "current_thread")]
    async fn helpers_run_side_by_side_on_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let marks = dir.path().join("started");
        std::fs::create_dir(&marks).unwrap();
        let body = format!(
            r#"read -r line; touch '{m}'/"$line"; n=0
while [ "$(ls '{m}' | wc -l)" -lt 8 ]; do n=$((n+1)); [ $n -gt 200 ] && exit 9; sleep 0.05; done
echo "$line""#,
            m = marks.display()
        );
        let helper = script(dir.path(), &body);
        let runs = (0..8).map(|i| {
            let helper = helper.clone();
            async move {
                let input = format!("{i}\n");
                run(&helper, "get", input.as_bytes(), &[], limits()).await
            }
        });
        let done = futures_util::future::join_all(runs).await;
        for (i, d) in done.into_iter().enumerate() {
            let d = d.unwrap();
            assert_eq!((d.status, d.stdout), (0, format!("{i}\n").into_bytes()));
        }
    }
}
