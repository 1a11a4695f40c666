//! What std cannot do, and the only `unsafe` in ocidl: catching Ctrl-C (and stopping a
//! credential helper with us), starting disk writeback early, reading a pipe without
//! blocking, and opening a local file that may not be a regular one without blocking. The design card allows no crate for these (no libc), so the C functions are
//! declared here, each call commented with why it is sound.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

const SIGINT: c_int = 2;
const SIGKILL: c_int = 9;
const SIGTERM: c_int = 15;
/// fcntl(2) commands and the flag, the same on every Linux architecture ocidl builds for.
const F_GETFL: c_int = 3;
const F_SETFL: c_int = 4;
pub const O_NONBLOCK: c_int = 0o4000;
/// Start writing the range's dirty pages; do not wait (sync_file_range(2)).
const SYNC_FILE_RANGE_WRITE: u32 = 2;

extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn _exit(status: c_int) -> !;
    fn sync_file_range(fd: c_int, offset: i64, nbytes: i64, flags: u32) -> c_int;
    fn kill(pid: c_int, signal: c_int) -> c_int;
    fn fcntl(fd: c_int, command: c_int, ...) -> c_int;
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

extern "C" fn on_signal(signum: c_int) {
    // An atomic load is lock-free and async-signal-safe.
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
/// against a deadline on one thread.
pub fn set_nonblocking(fd: &impl AsRawFd) -> std::io::Result<()> {
    // SAFETY: the descriptor is valid for the call (borrowed from a live owner); F_GETFL
    // and F_SETFL read and set only its status flags, taking and returning integers.
    let ok = unsafe {
        let flags = fcntl(fd.as_raw_fd(), F_GETFL);
        flags >= 0 && fcntl(fd.as_raw_fd(), F_SETFL, flags | O_NONBLOCK) >= 0
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

/// Opens `path` for reading only if it is a regular file (after symlinks), for every local
/// file ocidl reads whole: a FIFO would wait for ever, a device (`/dev/zero`) never end.
/// Anything else is refused before it is opened, so a device's open cannot act; `O_NONBLOCK`
/// keeps the open of what was swapped in since from waiting for a writer, and the opened
/// file is checked again. For a regular file the flag changes nothing.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let not_regular = || io::Error::other("not a regular file");
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    match file.metadata()?.is_file() {
        true => Ok(file),
        false => Err(not_regular()),
    }
}
