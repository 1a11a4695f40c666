//! Runs the `ocidl` binary built by cargo in a test's directory and captures what it did:
//! to completion (`run`), or in the background (`spawn`) for signals and concurrent runs.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for retries with backoff; a run past it is a hang, which is a failure.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Variables that would change how ocidl connects, authenticates, caches or chooses its
/// sources, removed so a developer's environment cannot make a test pass or fail.
pub const SCRUBBED_ENV: &[&str] = &[
    "OCIDL_USERNAME",
    "OCIDL_PASSWORD",
    "OCIDL_CACHE",
    "OCIDL_MIRROR",
    "OCIDL_MIRROR_TAGS",
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "GITHUB_TOKEN",
];

/// The binary under test: the one cargo built for this machine, or `OCIDL_TEST_BIN` (a
/// cross-built release binary) started through `OCIDL_TEST_RUNNER` when that is set
/// (`qemu-aarch64-static`, words split on spaces). The same tests then check a foreign
/// binary under emulation; `make test-qemu` sets both (and `OCIDL_TEST_PLATFORM`).
/// `ocidl ARGS` in `cwd` as user `nobody` (through setpriv), with the harness's clean
/// environment: for what a user who does not own a directory meets there.
pub fn ocidl_as_nobody(cwd: &Path, args: &[&str]) -> std::process::Output {
    let binary = ocidl_command();
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(binary.get_program())
        .args(binary.get_args())
        .args(args)
        .current_dir(cwd)
        .env("HOME", cwd.join(".no-such-home"))
        .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    let out = command.output().expect("run setpriv");
    eprintln!(
        "$ (as nobody) ocidl {}\n[{}]\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ocidl_command() -> Command {
    let binary = match std::env::var_os("OCIDL_TEST_BIN") {
        // Absolute: the child starts in its own working directory.
        Some(path) => std::fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("OCIDL_TEST_BIN={}: {e}", Path::new(&path).display())),
        None => PathBuf::from(env!("CARGO_BIN_EXE_ocidl")),
    };
    let runner = std::env::var("OCIDL_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// `ocidl` about to run in `cwd`.
pub fn ocidl(cwd: &Path) -> Ocidl {
    Ocidl {
        cwd: cwd.to_path_buf(),
        args: Vec::new(),
        stdin: None,
        env: Vec::new(),
        timeout: DEFAULT_TIMEOUT,
    }
}

/// `ocidl --plain-http FLAGS... REFERENCE` in `cwd`: a pull from one of the tests' servers,
/// which speak plain HTTP unless they are TLS ones.
pub fn pull_plain(cwd: &Path, flags: &[&str], reference: &str) -> Ocidl {
    ocidl(cwd).arg("--plain-http").args(flags).arg(reference)
}

pub struct Ocidl {
    cwd: PathBuf,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Ocidl {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Ocidl {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Ocidl
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Bytes fed to stdin (otherwise stdin is empty: `/dev/null`).
    pub fn stdin(mut self, bytes: &[u8]) -> Ocidl {
        self.stdin = Some(bytes.to_vec());
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Ocidl {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Ocidl {
        self.timeout = timeout;
        self
    }

    /// The command, its printable form, and the stdin bytes to feed it.
    fn command(&self) -> (Command, String) {
        let shown_args: Vec<String> = self
            .args
            .iter()
            .map(|a| format!("{:?}", a.to_string_lossy()))
            .collect();
        let command_line = format!("ocidl {}", shown_args.join(" "));
        let mut command = ocidl_command();
        command.args(&self.args).current_dir(&self.cwd);
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        // No credentials from the developer's docker or podman login.
        let no_home = self.cwd.join(".no-such-home");
        // No mirrors from the machine's registries.conf: an empty one (a test that reads the
        // usual places sets it to "").
        command
            .env("HOME", &no_home)
            .env("DOCKER_CONFIG", no_home.join(".docker"))
            .env("CONTAINERS_REGISTRIES_CONF", "/dev/null");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        (command, command_line)
    }

    /// Runs to completion, panicking if it outlives the timeout or panics itself.
    pub fn run(self) -> Output {
        let timeout = self.timeout;
        let mut running = self.spawn();
        if running.wait_timeout(timeout).is_none() {
            let (command_line, stderr) = (running.command_line.clone(), running.stderr_so_far());
            drop(running);
            panic!("{command_line} still running after {timeout:?}; stderr:\n{stderr}");
        }
        running.output()
    }

    /// Starts ocidl in the background: for signals, and for two runs at once. The process
    /// is killed when the `Running` is dropped, so a failing test leaves none behind.
    pub fn spawn(self) -> Running {
        let (mut command, command_line) = self.command();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command_line}: {e}"));
        if let Some(bytes) = self.stdin {
            let mut pipe = child.stdin.take().unwrap();
            // Ignore errors: ocidl may exit without reading stdin (usage errors).
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        }
        let stdout = read_in_background(child.stdout.take().unwrap());
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = {
            let stderr = Arc::clone(&stderr);
            let mut pipe = child.stderr.take().unwrap();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => stderr.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            })
        };
        Running {
            child,
            command_line,
            status: None,
            stdout: Some(stdout),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }
}

/// An ocidl process running in the background.
pub struct Running {
    child: Child,
    command_line: String,
    /// Set once the process has been reaped; its pid may then belong to another process,
    /// so no signal is sent after that.
    status: Option<ExitStatus>,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    /// What it has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until stderr contains `text`; panics after `timeout`.
    pub fn wait_for_stderr(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr_so_far().contains(text) {
            let exited = self.status.is_some() || self.child.try_wait().unwrap().is_some();
            if exited || Instant::now() > deadline {
                // Let the reader thread catch up before judging.
                thread::sleep(Duration::from_millis(50));
                if self.stderr_so_far().contains(text) {
                    return;
                }
                panic!(
                    "{}: stderr lacks {text:?} ({}); stderr:\n{}",
                    self.command_line,
                    if exited { "it exited" } else { "timed out" },
                    self.stderr_so_far()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it has exited (and reaps it if so).
    pub fn exited(&mut self) -> bool {
        self.try_status().is_some()
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Sends a signal with kill(1): `name` is `INT`, `TERM`, `KILL`...
    pub fn signal(&mut self, name: &str) {
        assert!(
            self.try_status().is_none(),
            "{}: already exited, cannot send SIG{name}; stderr:\n{}",
            self.command_line,
            self.stderr_so_far()
        );
        // The shell's own `kill`: no procps needed, and std has no way to send a signal.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{name} {}", self.pid()))
            .status()
            .expect("run sh -c kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `timeout` for it to exit and returns what it did; panics if it is still
    /// running then (it is killed on drop).
    pub fn finish(mut self, timeout: Duration) -> Output {
        if self.wait_timeout(timeout).is_none() {
            panic!(
                "{} still running {timeout:?} later; stderr:\n{}",
                self.command_line,
                self.stderr_so_far()
            );
        }
        self.output()
    }

    /// The output of an exited process, checked for panics.
    fn output(mut self) -> Output {
        let status = self.status.expect("output() before exit");
        let stdout = self.stdout.take().unwrap().join().unwrap();
        self.stderr_reader.take().unwrap().join().unwrap();
        let output = Output {
            command_line: self.command_line.clone(),
            // A signal death has no code; -1 never matches an expected status.
            code: status.code().unwrap_or(-1),
            signal: status.signal(),
            stdout,
            stderr: self.stderr_so_far(),
        };
        // Shown by the test harness when the test fails.
        eprintln!(
            "$ {}\n[exit {}{}]\n{}",
            output.command_line,
            output.code,
            output
                .signal
                .map(|s| format!(", signal {s}"))
                .unwrap_or_default(),
            output.stderr
        );
        assert!(
            !output.stderr.contains("panicked") && !output.stderr.contains("RUST_BACKTRACE"),
            "{} panicked:\n{}",
            output.command_line,
            output.stderr
        );
        output
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads `pipe` to its end on a thread of its own, so a full pipe never blocks the child.
pub fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// What a run did.
pub struct Output {
    pub command_line: String,
    pub code: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code, code,
            "{}: exit status {} (want {code}); stderr:\n{}",
            self.command_line, self.code, self.stderr
        );
        self
    }

    pub fn assert_success(&self) -> &Output {
        self.assert_code(0)
    }

    /// Exit status `code`, and an error line `ocidl: ...` containing `word`. Returns the line.
    pub fn assert_error(&self, code: i32, word: &str) -> &str {
        self.assert_code(code);
        self.error_line(word).unwrap_or_else(|| {
            panic!(
                "{}: no stderr line starting with 'ocidl: ' contains {word:?}; stderr:\n{}",
                self.command_line, self.stderr
            )
        })
    }

    /// The first line `ocidl: ...` containing `word`.
    pub fn error_line(&self, word: &str) -> Option<&str> {
        self.stderr
            .lines()
            .find(|line| line.starts_with("ocidl: ") && line.contains(word))
    }

    pub fn assert_stderr_contains(&self, text: &str) -> &Output {
        assert!(
            self.stderr.contains(text),
            "{}: stderr lacks {text:?}:\n{}",
            self.command_line,
            self.stderr
        );
        self
    }

    pub fn assert_stderr_empty(&self) -> &Output {
        assert!(
            self.stderr.is_empty(),
            "{}: stderr not empty:\n{}",
            self.command_line,
            self.stderr
        );
        self
    }

    /// stdout carries only data; most runs write none.
    pub fn assert_stdout_empty(&self) -> &Output {
        assert!(
            self.stdout.is_empty(),
            "{}: unexpected stdout ({} bytes): {:?}",
            self.command_line,
            self.stdout.len(),
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(200)])
        );
        self
    }
}
