//! The two things std cannot do, and the only `unsafe` in ocidl: catching Ctrl-C, and
//! starting disk writeback early. The design card allows no crate for either (no libc), so
//! the C functions are declared here, each call commented with why it is sound.

#![allow(unsafe_code)]

use std::ffi::c_int;
use std::fs::File;
use std::os::fd::AsRawFd;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
/// Start writing the range's dirty pages; do not wait (sync_file_range(2)).
const SYNC_FILE_RANGE_WRITE: u32 = 2;

extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn _exit(status: c_int) -> !;
    fn sync_file_range(fd: c_int, offset: i64, nbytes: i64, flags: u32) -> c_int;
}

// Nothing needs cleaning up when a run is cut short: a file reaches its final name only
// by an atomic rename after it verified, and the bytes downloaded so far sit in a
// `.ocidl-partial` file that the next run resumes. So the handler only says so and exits
// with 128 + the signal number, as a shell would report it.
const MESSAGE: &[u8] =
    b"ocidl: stopped by a signal; what was downloaded is kept in .*.ocidl-partial files, \
and the same command resumes it\n";

extern "C" fn on_signal(signum: c_int) {
    // SAFETY: write(2) and _exit(2) are async-signal-safe (signal-safety(7)); MESSAGE is
    // static, and no Rust state is touched.
    unsafe {
        write(2, MESSAGE.as_ptr(), MESSAGE.len());
        _exit(128 + signum);
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
