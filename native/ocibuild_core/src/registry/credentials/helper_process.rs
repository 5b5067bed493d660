//! Running one credential helper with a deadline, an output cap, and an exit status we can
//! trust even inside the BEAM.
//!
//! The BEAM sets SIGCHLD to SIG_IGN, so the kernel reaps our children itself and `waitpid`
//! answers ECHILD instead of a status. So the helper runs under a tiny `/bin/sh` wrapper
//! whose own SIGCHLD disposition is reset to the default: the shell waits for the helper
//! like any shell does and writes `$?` to a pipe of its own (fd 3). Reading that pipe, with
//! the helper's stdout and stderr, in one `poll(2)` loop bounded by the deadline, gives the
//! status without ever needing `waitpid`. The helper does not get fd 3, so it cannot forge
//! the status, and end-of-file on fd 3 means the wrapper is gone.
//!
//! The wrapper leads a new process group: on timeout or runaway output the whole group
//! (wrapper, helper, whatever the helper started) is killed.
//!
//! ```no_run
//! # use ocibuild_core::registry::credentials::helper_process::{run, Limits};
//! # use std::{path::Path, time::Duration};
//! let limits = Limits { timeout: Duration::from_secs(30), max_output: 64 * 1024 };
//! let helper = Path::new("/usr/bin/docker-credential-pass");
//! let done = run(helper, "get", b"ghcr.io", &[], limits)?;
//! println!("exit status {}", done.status);
//! # Ok::<(), ocibuild_core::registry::credentials::helper_process::Failure>(())
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
/// collect its status and output.
pub fn run(
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
    let deadline = Instant::now() + limits.timeout;
    let outcome = collect(&mut child, status_read, input, limits, deadline);
    if outcome.is_err() {
        kill_group(&child);
    }
    // The wrapper has exited (its fd 3 closed) or was just killed, so this returns at once.
    // Under an ignored SIGCHLD it answers ECHILD, which is fine: the kernel reaped it.
    let _ = child.wait();
    outcome
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

/// One pipe end being read to end-of-file, keeping at most `cap` bytes.
struct Source {
    pipe: Option<File>,
    bytes: Vec<u8>,
    cap: usize,
}

impl Source {
    fn new(pipe: Option<impl Into<OwnedFd>>, cap: usize) -> Result<Source, Failure> {
        let pipe = pipe.map(nonblocking).transpose().map_err(Failure::Io)?;
        Ok(Source {
            pipe,
            bytes: Vec::new(),
            cap,
        })
    }

    /// Read what is there; `Ok(false)` when more than `cap` bytes came.
    fn drain(&mut self) -> io::Result<bool> {
        let Some(pipe) = &mut self.pipe else {
            return Ok(true);
        };
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => {
                    self.pipe = None;
                    return Ok(true);
                }
                Ok(n) if self.bytes.len() + n > self.cap => return Ok(false),
                Ok(n) => self.bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The helper's stdin, fed without blocking, then closed so the helper sees end-of-file.
struct Sink<'a> {
    pipe: Option<File>,
    rest: &'a [u8],
}

impl Sink<'_> {
    fn feed(&mut self) {
        let Some(pipe) = &mut self.pipe else { return };
        while !self.rest.is_empty() {
            match pipe.write(self.rest) {
                Ok(n) => self.rest = &self.rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // The helper closed its stdin without reading: its status will say more.
                Err(_) => break,
            }
        }
        self.pipe = None;
    }
}

fn collect(
    child: &mut Child,
    status_read: OwnedFd,
    input: &[u8],
    limits: Limits,
    deadline: Instant,
) -> Result<Finished, Failure> {
    let stdin = child.stdin.take().map(nonblocking).transpose();
    let mut stdin = Sink {
        pipe: stdin.map_err(Failure::Io)?,
        rest: input,
    };
    let mut status = Source::new(Some(status_read), MAX_STATUS_BYTES)?;
    let mut stdout = Source::new(child.stdout.take(), limits.max_output)?;
    let mut stderr = Source::new(child.stderr.take(), limits.max_output)?;
    stdin.feed();
    while [&status, &stdout, &stderr].iter().any(|s| s.pipe.is_some()) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Failure::TimedOut(limits.timeout));
        }
        wait_for_any(&stdin, [&status, &stdout, &stderr], remaining).map_err(Failure::Io)?;
        stdin.feed();
        for output in [&mut stdout, &mut stderr] {
            if !output.drain().map_err(Failure::Io)? {
                return Err(Failure::OutputTooLarge(limits.max_output));
            }
        }
        if !status.drain().map_err(Failure::Io)? {
            return Err(Failure::NoStatus);
        }
    }
    let status = std::str::from_utf8(&status.bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(Failure::NoStatus)?;
    Ok(Finished {
        status,
        stdout: stdout.bytes,
        stderr: stderr.bytes,
    })
}

/// Block until one of the open descriptors is ready, or `timeout` passes.
fn wait_for_any(stdin: &Sink, sources: [&Source; 3], timeout: Duration) -> io::Result<()> {
    let mut fds: Vec<libc::pollfd> = sources
        .iter()
        .filter_map(|s| s.pipe.as_ref())
        .map(|pipe| libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    if let Some(pipe) = &stdin.pipe {
        fds.push(libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        });
    }
    // Rounded up, so a deadline a fraction of a millisecond away is not a busy loop.
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is a live, correctly sized array of pollfd for the whole call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if ready == -1 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
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

/// A pipe end as a `File` (for `Read`/`Write`) that never blocks.
fn nonblocking(fd: impl Into<OwnedFd>) -> io::Result<File> {
    let fd: OwnedFd = fd.into();
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags == -1 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(fd))
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

    #[test]
    fn a_missing_program_reports_the_shells_status() {
        let limits = Limits {
            timeout: Duration::from_secs(20),
            max_output: 1024,
        };
        let done = run(Path::new("/nonexistent/helper"), "get", b"", &[], limits).unwrap();
        assert_eq!(done.status, 127);
    }
}
