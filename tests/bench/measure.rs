//! Running one client under measurement: wall time from the harness's own clock, peak RSS
//! from GNU time, with a watchdog so a hung client cannot hang `make bench`.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const GNU_TIME: &str = "/usr/bin/time";

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn sync();
}

/// Flushes every dirty page to disk, so one run's write-back is not paid by the next run.
pub fn sync_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { sync() }
}

/// What one measured run did.
pub struct Run {
    pub wall: Duration,
    /// Peak resident set size in KiB (`ru_maxrss` of the process tree, as GNU time reports it).
    pub rss_kib: u64,
    /// User plus system CPU time of the process tree.
    pub cpu: Duration,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    /// `Ok` when the exit status was 0, else a one-line reason.
    pub fn success(&self) -> Result<(), String> {
        if self.code == 0 {
            Ok(())
        } else {
            let last = self
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(format!("exit {}: {}", self.code, truncate(last, 160)))
        }
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}

/// Runs `argv` in `cwd` under `/usr/bin/time -f '%e %M %U %S' -o <file>` (so GNU time's report stays
/// off the client's stderr). The wall time is the harness's `Instant` around spawn and wait
/// of the whole thing, so it includes GNU time's own fork+exec (see `wrapper_overhead`).
/// stdout and stderr go to files in `scratch` (no reader threads competing for the CPU).
pub fn measured(argv: &[String], cwd: &Path, scratch: &Path, timeout: Duration) -> Run {
    let time_file = scratch.join("gnu-time.out");
    let out_file = scratch.join("stdout");
    let err_file = scratch.join("stderr");
    let _ = fs::remove_file(&time_file);
    let mut command = Command::new(GNU_TIME);
    command
        .arg("-f")
        .arg("%e %M %U %S")
        .arg("-o")
        .arg(&time_file)
        .arg("--")
        .args(argv);
    let (wall, code) = spawn_timed(command, cwd, Some((&out_file, &err_file)), timeout, argv);
    let report = fs::read_to_string(&time_file).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" before the format line.
    let fields: Vec<&str> = report
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let rss_kib = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    let seconds = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = Duration::from_secs_f64(seconds(2) + seconds(3));
    Run {
        wall,
        rss_kib,
        cpu,
        code,
        stdout: fs::read(&out_file).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&fs::read(&err_file).unwrap_or_default()).into_owned(),
    }
}

/// Spawns `command` (in its own process group, environment scrubbed) and waits for it,
/// killing the whole group after `timeout`. Returns the wall time and the exit code
/// (-1 for a signal death).
pub fn spawn_timed(
    mut command: Command,
    cwd: &Path,
    outputs: Option<(&Path, &Path)>,
    timeout: Duration,
    shown: &[String],
) -> (Duration, i32) {
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .process_group(0);
    for name in crate::support::run::SCRUBBED_ENV {
        command.env_remove(name);
    }
    match outputs {
        Some((out, err)) => {
            command
                .stdout(File::create(out).expect("create stdout file"))
                .stderr(File::create(err).expect("create stderr file"));
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let start = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {shown:?}: {e}"));
    let pid = child.id() as i32;
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if finished.recv_timeout(timeout).is_err() {
            // SAFETY: kill(2) on our own child's process group; no memory involved.
            unsafe { kill(-pid, 9) };
            true
        } else {
            false
        }
    });
    let status = child.wait().expect("wait for child");
    let wall = start.elapsed();
    let _ = done.send(());
    if watchdog.join().unwrap_or(false) {
        eprintln!("bench: killed after {timeout:?}: {shown:?}");
    }
    (wall, status.code().unwrap_or(-1))
}

/// Median wall time of `argv` spawned and waited for `n` times, output discarded.
pub fn median_spawn(argv: &[String], n: usize, cwd: &Path) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            spawn_timed(command, cwd, None, Duration::from_secs(10), argv).0
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

pub fn median_u64(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

pub fn median_duration(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// sha256 of a file, streamed (a 1 GiB output is never held in memory).
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((format!("sha256:{hex}"), total))
}

/// `path` holds exactly the blob `digest` of `size` bytes.
pub fn check_file(path: &Path, digest: &str, size: u64) -> Result<(), String> {
    match sha256_file(path) {
        Ok((got, len)) if got == digest && len == size => Ok(()),
        Ok((got, len)) => Err(format!(
            "{}: wrong content ({len} bytes, {got}; want {size} bytes, {digest})",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// What the ELF headers say about linking: static when there is no PT_INTERP (no dynamic
/// loader is asked for). A static-pie binary still has PT_DYNAMIC (self-relocation).
pub struct ElfLinking {
    pub elf_type: &'static str,
    pub interp: bool,
    pub dynamic: bool,
}

pub fn elf_linking(path: &Path) -> Result<ElfLinking, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let elf_type = match u16_at(16) {
        2 => "ET_EXEC",
        3 => "ET_DYN",
        _ => "other",
    };
    let phoff = u64_at(32) as usize;
    let phentsize = u16_at(54) as usize;
    let phnum = u16_at(56) as usize;
    let (mut interp, mut dynamic) = (false, false);
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if at + 4 > bytes.len() {
            return Err("program headers out of range".into());
        }
        match u32_at(at) {
            2 => dynamic = true,
            3 => interp = true,
            _ => {}
        }
    }
    Ok(ElfLinking {
        elf_type,
        interp,
        dynamic,
    })
}

/// `file`'s one-line description, when `file` is installed.
pub fn file_description(path: &Path) -> Option<String> {
    let out = Command::new("file").arg("-b").arg(path).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A fresh, empty directory `dir/name`.
pub fn fresh_dir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    path
}
