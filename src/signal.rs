//! Ctrl-C and `kill`: stop at once, keep what was downloaded.
//!
//! Nothing needs cleaning up when a run is cut short: a file reaches its final name only
//! by an atomic rename after it verified, and the bytes downloaded so far sit in a
//! `.ocidl-partial` file that the next run resumes. So the handler only says so and exits
//! with 128 + the signal number, as a shell would report it.

// The one place ocidl needs `unsafe`: std has no signal API, and the design card allows no
// crate for it. Sound because the handler calls only async-signal-safe functions
// (write, _exit; see signal-safety(7)) on static data, and touches no Rust state.
#![allow(unsafe_code)]

use std::ffi::c_int;

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn _exit(status: c_int) -> !;
}

const MESSAGE: &[u8] = b"ocidl: stopped by a signal; what was downloaded is kept in .*.ocidl-partial files, \
and the same command resumes it\n";

extern "C" fn on_signal(signum: c_int) {
    // SAFETY: see the top of this file.
    unsafe {
        write(2, MESSAGE.as_ptr(), MESSAGE.len());
        _exit(128 + signum);
    }
}

/// Routes SIGINT and SIGTERM to `on_signal` (exit 130 and 143).
pub fn install() {
    // SAFETY: see the top of this file.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
}
