//! Runs the `ocidl` binary built by cargo in a test's directory and captures what it did.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Long enough for retries with backoff; a run past it is a hang, which is a failure.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Variables that would change how ocidl connects or authenticates, removed so a developer's
/// environment cannot make a test pass or fail.
const SCRUBBED_ENV: &[&str] = &[
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

    /// Runs to completion, panicking if it outlives the timeout or panics itself.
    pub fn run(self) -> Output {
        let shown_args: Vec<String> = self
            .args
            .iter()
            .map(|a| format!("{:?}", a.to_string_lossy()))
            .collect();
        let command_line = format!("ocidl {}", shown_args.join(" "));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ocidl"));
        command.args(&self.args).current_dir(&self.cwd);
        for name in SCRUBBED_ENV {
            command.env_remove(name);
        }
        // No credentials from the developer's docker or podman login.
        let no_home = self.cwd.join(".no-such-home");
        command
            .env("HOME", &no_home)
            .env("DOCKER_CONFIG", no_home.join(".docker"));
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
        let stderr = read_in_background(child.stderr.take().unwrap());

        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
                panic!(
                    "{command_line} still running after {:?}; stderr:\n{stderr}",
                    self.timeout
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let output = Output {
            command_line,
            // A signal death has no code; -1 never matches an expected status.
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap(),
            stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned(),
        };
        // Shown by the test harness when the test fails.
        eprintln!(
            "$ {}\n[exit {}]\n{}",
            output.command_line, output.code, output.stderr
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

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
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
