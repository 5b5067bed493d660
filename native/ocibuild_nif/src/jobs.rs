//! Long network work runs on a tokio runtime owned by this library, never on a BEAM
//! scheduler. A job NIF returns at once with `{ok, JobId, Handle}`; the job later sends the
//! calling process `{ocibuild_job, JobId, {progress, Map}}` messages and one
//! `{ocibuild_job, JobId, {done, Result}}`.
//!
//! `Handle` is a resource: when the caller lets go of it (in practice, when the caller dies
//! and its heap is freed) the job is aborted, which drops its futures and with them any
//! temp files. A panic inside a job becomes `{error, {internal_error, Message}}`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use futures_util::FutureExt;
use ocibuild_core::registry::{Progress, ProgressSink, Registries};
use ocibuild_core::{Error, Result};
use rustler::{Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term};
use tokio::task::AbortHandle;

use crate::{atoms, reply, terms};

static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
static REGISTRIES: OnceLock<Registries> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Shared by all jobs so connection pools and tokens are reused across calls.
pub fn registries() -> &'static Registries {
    REGISTRIES.get_or_init(Registries::new)
}

fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().max(2)))
                .thread_name("ocibuild-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::io("starting the I/O runtime", std::io::Error::other(e.clone())))
}

pub struct JobHandle {
    abort: Mutex<Option<AbortHandle>>,
}

#[rustler::resource_impl]
impl rustler::Resource for JobHandle {}

impl Drop for JobHandle {
    fn drop(&mut self) {
        let abort = self.abort.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = abort {
            handle.abort();
        }
    }
}

/// Counts running jobs; decremented when the job's future is dropped, whether it finished
/// or was aborted. Dirty NIFs that write output (save, export) hold one too, for as long as
/// they run, so a test can wait for a killed caller's sink to be gone.
pub struct Running;

impl Running {
    pub fn start() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the process that called the running NIF is still alive. A dirty NIF keeps
/// running after its caller is killed; this is how it learns to stop.
pub fn caller_alive(env: Env) -> bool {
    // SAFETY: `env` is the live environment of the NIF call running on this very thread,
    // which is what enif_is_current_process_alive requires.
    unsafe { rustler::sys::enif_is_current_process_alive(env.as_c_arg()) != 0 }
}

/// Run `future` on the runtime from a dirty NIF, until it ends or the NIF's caller dies
/// (asked every 50 ms: the VM has no callback for it), which drops the future and so
/// cancels its downloads and removes their temp files.
pub fn block_on_while_caller_lives<T>(
    env: Env,
    future: impl Future<Output = Result<T>>,
) -> Result<T> {
    let caller_gone = async {
        while caller_alive(env) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    runtime()?.block_on(async {
        futures_util::pin_mut!(future, caller_gone);
        match futures_util::future::select(future, caller_gone).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(((), _)) => {
                Err(Error::Cancelled("fetching base layers".into()))
            }
        }
    })
}

pub fn running() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

/// A progress sink that messages `pid`.
fn progress_sink(pid: LocalPid, id: u64) -> ProgressSink {
    std::sync::Arc::new(move |p: Progress| {
        let mut msg_env = OwnedEnv::new();
        let _ = msg_env.send_and_clear(&pid, |env| {
            let inner = (atoms::progress(), terms::encode_progress(env, &p));
            (atoms::ocibuild_job(), id, inner).encode(env)
        });
    })
}

/// Start `make(progress)` on the runtime; its result is encoded with `encode` and sent to
/// the caller. Returns `{ok, JobId, Handle}` or `{error, Reason}` if the runtime cannot start.
pub fn start<'a, F, T, E>(env: Env<'a>, make: impl FnOnce(ProgressSink) -> F, encode: E) -> Term<'a>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
    E: for<'b> FnOnce(Env<'b>, T) -> Term<'b> + Send + 'static,
{
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return reply::error(env, &e),
    };
    let pid = env.pid();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let future = make(progress_sink(pid, id));
    let running = Running::start();
    let task = rt.spawn(async move {
        let _running = running;
        let outcome = AssertUnwindSafe(future).catch_unwind().await;
        let mut msg_env = OwnedEnv::new();
        let _ = msg_env.send_and_clear(&pid, move |env| {
            let result = match outcome {
                Ok(Ok(value)) => (atoms::ok(), encode(env, value)).encode(env),
                Ok(Err(e)) => reply::error(env, &e),
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    (atoms::error(), (atoms::internal_error(), why)).encode(env)
                }
            };
            (atoms::ocibuild_job(), id, (atoms::done(), result)).encode(env)
        });
    });
    let handle = ResourceArc::new(JobHandle {
        abort: Mutex::new(Some(task.abort_handle())),
    });
    (atoms::ok(), id, handle).encode(env)
}

/// `job_count()`: jobs currently running in this VM (tests use it to see a dead caller's
/// job go away).
#[rustler::nif]
fn job_count() -> usize {
    running()
}

/// `job_cancel(Handle)`: abort a job now (used when the caller gives up waiting).
#[rustler::nif]
fn job_cancel(handle: ResourceArc<JobHandle>) -> rustler::Atom {
    let abort = handle
        .abort
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(h) = abort {
        h.abort();
    }
    atoms::ok()
}
