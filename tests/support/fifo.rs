//! FIFOs for the tests: one made with mkfifo(1), and a reader in a thread that never blocks
//! in `open`, so a test cannot hang on an ocidl that failed, or replaced the FIFO instead of
//! writing into it.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Reads a FIFO in a thread until `finish` is called and no writer is left. The FIFO is
/// opened without blocking, so the thread never hangs in `open` waiting for a writer that
/// does not come (an ocidl that failed, or replaced the FIFO instead of writing into it).
pub struct FifoReader {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u8>>>,
}

impl FifoReader {
    pub fn start(path: &Path) -> FifoReader {
        const O_NONBLOCK: i32 = 0o4000;
        let mut fifo = OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let done = Arc::new(AtomicBool::new(false));
        let finished = Arc::clone(&done);
        let thread = thread::spawn(move || {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match fifo.read(&mut buf) {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    // No writer (not yet, or no longer): stop once the run is over.
                    Ok(_) if finished.load(Ordering::SeqCst) => return got,
                    Ok(_) => thread::sleep(Duration::from_millis(1)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("read FIFO: {e}"),
                }
            }
        });
        FifoReader {
            done,
            thread: Some(thread),
        }
    }

    /// Call once the writer has exited: everything it wrote.
    pub fn finish(mut self) -> Vec<u8> {
        self.done.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
