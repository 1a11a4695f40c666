//! Runs `ocidl` through `sh`: inside a real pseudo-terminal, to see what a person at a
//! terminal sees, or without one, for what needs a shell (a umask, say).
//!
//! The terminal is made by util-linux's `script` (Debian's `bsdutils`, an essential package,
//! so it is on every Debian machine): `script -qfec CMD /dev/null` runs CMD with a pty as its
//! stdin, stdout and stderr, and copies everything written to the pty to its own stdout,
//! which is captured here. One of ocidl's streams stays on the terminal and the other is
//! redirected to a file, so a test can tell them apart (`Streams`). The pty's `onlcr` is
//! turned off (`stty -onlcr`) so the captured bytes are exactly the bytes ocidl wrote: a
//! `\r` in them is ocidl's own.
//!
//! The environment is cleaned like `run.rs` does, so a developer's proxy or docker login
//! cannot change a result.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::run::read_in_background;
use super::TempDir;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Which of ocidl's output streams is the terminal.
// The shared `Terminal` is the point: each name says where the terminal is.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// stderr is the terminal; stdout goes to a file. What `ocidl ... > file` looks like.
    StderrOnTerminal,
    /// stdout is the terminal; stderr goes to a file.
    StdoutOnTerminal,
    /// No terminal: both go to files (pipes, as in CI logs).
    NoTerminal,
}

/// `ocidl` about to run in `cwd` with its stderr on a terminal.
pub fn ocidl_in_terminal(cwd: &Path) -> Shell {
    Shell::new(cwd, Streams::StderrOnTerminal)
}

/// `ocidl` about to run in `cwd` under `sh`, without a terminal.
pub fn ocidl_in_shell(cwd: &Path) -> Shell {
    Shell::new(cwd, Streams::NoTerminal)
}

pub struct Shell {
    cwd: PathBuf,
    streams: Streams,
    /// Shell commands run before ocidl, e.g. `umask 027`.
    prelude: Vec<String>,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Shell {
    fn new(cwd: &Path, streams: Streams) -> Shell {
        Shell {
            cwd: cwd.to_path_buf(),
            streams,
            prelude: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn streams(mut self, streams: Streams) -> Shell {
        self.streams = streams;
        self
    }

    /// A shell command to run first, in the same shell (`umask 027`).
    pub fn prelude(mut self, command: &str) -> Shell {
        self.prelude.push(command.to_string());
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Shell {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Shell
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Shell {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Shell {
        self.timeout = timeout;
        self
    }

    /// Runs to completion; panics if it outlives the timeout or ocidl panics.
    pub fn run(self) -> ShellOutput {
        // Captured streams go to files outside the test's directory, so they never show in
        // its file listings.
        let io = TempDir::new();
        let stdout_file = io.join("stdout");
        let stderr_file = io.join("stderr");
        let mut inner = String::new();
        if self.streams != Streams::NoTerminal {
            inner.push_str("stty -onlcr 2>/dev/null; ");
        }
        for command in &self.prelude {
            inner.push_str(command);
            inner.push_str("; ");
        }
        inner.push_str("exec ");
        inner.push_str(&quote(
            Path::new(env!("CARGO_BIN_EXE_ocidl"))
                .as_os_str()
                .as_bytes(),
        ));
        for arg in &self.args {
            inner.push(' ');
            inner.push_str(&quote(arg.as_bytes()));
        }
        let to_file = |path: &Path| quote(path.as_os_str().as_bytes());
        match self.streams {
            Streams::StderrOnTerminal => inner.push_str(&format!(" >{}", to_file(&stdout_file))),
            Streams::StdoutOnTerminal => inner.push_str(&format!(" 2>{}", to_file(&stderr_file))),
            Streams::NoTerminal => inner.push_str(&format!(
                " >{} 2>{}",
                to_file(&stdout_file),
                to_file(&stderr_file)
            )),
        }
        let command_line = format!("[{:?}] sh -c {inner}", self.streams);

        let mut command = if self.streams == Streams::NoTerminal {
            let mut c = Command::new("sh");
            c.arg("-c").arg(&inner);
            c
        } else {
            let mut c = Command::new("script");
            c.args(["-q", "-f", "-e", "-c"])
                .arg(&inner)
                .arg("/dev/null");
            c
        };
        command.current_dir(&self.cwd);
        for name in super::run::SCRUBBED_ENV {
            command.env_remove(name);
        }
        let no_home = self.cwd.join(".no-such-home");
        command
            .env("HOME", &no_home)
            .env("DOCKER_CONFIG", no_home.join(".docker"))
            .env("SHELL", "/bin/sh");
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("spawn {command_line}: {e} (is util-linux's script installed?)")
        });
        let terminal = read_in_background(child.stdout.take().unwrap());
        let own_stderr = read_in_background(child.stderr.take().unwrap());
        let status = wait(&mut child, self.timeout).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command_line} still running after {:?}", self.timeout)
        });
        let elapsed = started.elapsed();
        let terminal = terminal.join().unwrap();
        let own_stderr = own_stderr.join().unwrap();
        let read = |path: &Path| std::fs::read(path).unwrap_or_default();
        let output = ShellOutput {
            command_line,
            code: status.code().unwrap_or(-1),
            terminal,
            stdout: read(&stdout_file),
            stderr: read(&stderr_file),
            shell_stderr: String::from_utf8_lossy(&own_stderr).into_owned(),
            elapsed,
        };
        eprintln!(
            "$ {}\n[exit {}, {:?}]\nterminal: {:?}\nstderr: {:?}\n{}",
            output.command_line,
            output.code,
            output.elapsed,
            String::from_utf8_lossy(&output.terminal),
            String::from_utf8_lossy(&output.stderr),
            output.shell_stderr
        );
        let all = [&output.terminal[..], &output.stderr[..]].concat();
        let all = String::from_utf8_lossy(&all);
        assert!(
            !all.contains("panicked"),
            "{} panicked:\n{all}",
            output.command_line
        );
        output
    }
}

/// What a run did.
pub struct ShellOutput {
    pub command_line: String,
    pub code: i32,
    /// Every byte written to the terminal (empty without one).
    pub terminal: Vec<u8>,
    /// ocidl's stdout, when it was not the terminal.
    pub stdout: Vec<u8>,
    /// ocidl's stderr, when it was not the terminal.
    pub stderr: Vec<u8>,
    /// What `script` or `sh` themselves said.
    pub shell_stderr: String,
    pub elapsed: Duration,
}

impl ShellOutput {
    pub fn assert_success(&self) -> &ShellOutput {
        assert_eq!(
            self.code,
            0,
            "{}: exit status {}; terminal: {:?}; stderr: {:?}; shell: {}",
            self.command_line,
            self.code,
            String::from_utf8_lossy(&self.terminal),
            String::from_utf8_lossy(&self.stderr),
            self.shell_stderr
        );
        self
    }

    /// The terminal's bytes as text (lossy).
    pub fn terminal_text(&self) -> String {
        String::from_utf8_lossy(&self.terminal).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// `'...'` for sh, with `'` written as `'\''`.
fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn wait(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        let tmp = TempDir::new();
        let odd = "it's a \"test\" $HOME `x` \\";
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote(odd.as_bytes())))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), odd);
    }
}
