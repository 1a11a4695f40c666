//! What std cannot do, and the only `unsafe` in ocidl: catching Ctrl-C (and stopping a
//! credential helper with us), starting disk writeback early, reading a pipe without
//! blocking, asking who we run as and the umask, and holding signals off while a package is
//! renamed into place. The design card allows no crate for these (no libc), so the C
//! functions are declared here, each call commented with why it is sound.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

const SIGINT: c_int = 2;
const SIGKILL: c_int = 9;
const SIGTERM: c_int = 15;
/// fcntl(2) commands and the flag, the same on every Linux architecture ocidl builds for.
const F_GETFL: c_int = 3;
const F_SETFL: c_int = 4;
pub const O_NONBLOCK: c_int = 0o4000;
/// open(2) fails on a symlink instead of following it. Its value is one of the few that
/// differ between Linux architectures: arm and arm64 (and powerpc) have their own.
#[cfg(any(
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "powerpc64"
))]
pub const O_NOFOLLOW: c_int = 0o100000;
#[cfg(not(any(
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "powerpc64"
)))]
pub const O_NOFOLLOW: c_int = 0o400000;
/// Start writing the range's dirty pages; do not wait (sync_file_range(2)).
const SYNC_FILE_RANGE_WRITE: u32 = 2;

extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn _exit(status: c_int) -> !;
    fn sync_file_range(fd: c_int, offset: i64, nbytes: i64, flags: u32) -> c_int;
    fn kill(pid: c_int, signal: c_int) -> c_int;
    fn fcntl(fd: c_int, command: c_int, ...) -> c_int;
    fn getuid() -> u32;
    fn umask(mask: u32) -> u32;
}

/// The mode new files get (0666 less the umask), read once: a temporary file is made 0600,
/// so that no one else can open (or lock) it, and given this mode once verified.
pub fn file_mode() -> u32 {
    static MODE: AtomicI32 = AtomicI32::new(-1);
    let mode = MODE.load(Ordering::Relaxed);
    if mode >= 0 {
        return mode as u32;
    }
    // SAFETY: umask(2) only swaps the process's mask and cannot fail; it is set straight
    // back, and ocidl has one thread, so nothing creates a file in between.
    let mask = unsafe {
        let mask = umask(0o077);
        umask(mask);
        mask
    };
    let mode = 0o666 & !mask;
    MODE.store(mode as i32, Ordering::Relaxed);
    mode
}

/// The user ocidl runs as: a partial file is resumed only when it is theirs.
pub fn uid() -> u32 {
    // SAFETY: getuid(2) takes nothing, always succeeds and touches no memory of ours.
    unsafe { getuid() }
}

/// The credential helper running now, if any (0: none): a signal that stops ocidl stops it
/// too, or it would be left running, perhaps waiting on a prompt no one sees.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Records the child process a signal must take down with ocidl (`None` once it is gone).
pub fn track_child(pid: Option<u32>) {
    let pid = pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    CHILD.store(pid, Ordering::SeqCst);
}

// Nothing needs cleaning up when a run is cut short: a file reaches its final name only
// by an atomic rename after it verified, and the bytes downloaded so far sit in a
// `.ocidl-partial` file that the next run resumes. So the handler only says so and exits
// with 128 + the signal number, as a shell would report it.
const MESSAGE: &[u8] =
    b"ocidl: stopped by a signal; what was downloaded is kept in .*.ocidl-partial files, \
and the same command resumes it\n";

/// While a package's files are renamed into place, a signal waits for the last rename:
/// the package is installed whole or not at all. 0: no commit; -1: committing; a signal
/// number: one came during the commit.
static COMMITTING: AtomicI32 = AtomicI32::new(0);

/// Runs `renames` with SIGINT and SIGTERM held off until it returns; one that came meanwhile
/// then stops ocidl as it would have.
pub fn uninterrupted<T>(renames: impl FnOnce() -> T) -> T {
    COMMITTING.store(-1, Ordering::SeqCst);
    let done = renames();
    let pending = COMMITTING.swap(0, Ordering::SeqCst);
    if pending > 0 {
        on_signal(pending);
    }
    done
}

extern "C" fn on_signal(signum: c_int) {
    // Atomic loads and swaps are lock-free and async-signal-safe.
    if COMMITTING
        .compare_exchange(-1, signum, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        return;
    }
    let child = CHILD.load(Ordering::SeqCst);
    // SAFETY: kill(2), write(2) and _exit(2) are async-signal-safe (signal-safety(7));
    // MESSAGE is static, and no other Rust state is touched. `child` is a pid we spawned;
    // it is cleared right after the wait that reaps it, so at worst a signal in that instant
    // targets a pid no process has taken yet (the kernel hands pids out in sequence).
    unsafe {
        if child > 0 {
            kill(child, SIGKILL);
        }
        write(2, MESSAGE.as_ptr(), MESSAGE.len());
        _exit(128 + signum);
    }
}

/// Makes reads from `fd` return `WouldBlock` instead of waiting, so a pipe can be polled
/// against a deadline on one thread; or, with `false`, makes them wait again.
pub fn set_nonblocking(fd: &impl AsRawFd, nonblocking: bool) -> std::io::Result<()> {
    // SAFETY: the descriptor is valid for the call (borrowed from a live owner); F_GETFL
    // and F_SETFL read and set only its status flags, taking and returning integers.
    let ok = unsafe {
        let flags = fcntl(fd.as_raw_fd(), F_GETFL);
        let flags = match nonblocking {
            true => flags | O_NONBLOCK,
            false => flags & !O_NONBLOCK,
        };
        flags >= 0 && fcntl(fd.as_raw_fd(), F_SETFL, flags) >= 0
    };
    match ok {
        true => Ok(()),
        false => Err(std::io::Error::last_os_error()),
    }
}

/// Routes SIGINT and SIGTERM to `on_signal` (exit 130 and 143).
pub fn stop_on_signals() {
    // SAFETY: `on_signal` is a valid handler for its whole life (a static fn) and does only
    // what is safe in a handler, see above.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk now, without
/// waiting. A download calls it as it goes, so the fsync before the final rename finds
/// little left to write: the disk works while the network does, on one thread.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: the descriptor is valid for the call (borrowed from a live File), and the
    // call only reads its integer arguments. Failure (an old kernel, a file system without
    // support) costs nothing but the head start, so its result is ignored.
    unsafe {
        sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            SYNC_FILE_RANGE_WRITE,
        );
    }
}
