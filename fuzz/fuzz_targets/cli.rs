//! Any argument vector (the input split on NUL bytes, arguments need not be UTF-8) through
//! the command line parser: no panic, every refusal is a usage error (exit 2, decided before
//! anything is sent), and what is accepted keeps the promises `main` relies on, joined with
//! the environment into settings.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ocidl::cli::{self, Command, Mode, Output};
use ocidl::reference::Target;
use ocidl::settings::Settings;

fuzz_target!(|input: &[u8]| {
    let args: Vec<OsString> = input
        .split(|&b| b == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect();
    let _ = cli::lone_version(std::iter::once(OsString::from("ocidl")).chain(args.clone()));
    match cli::parse_args(lexopt::Parser::from_args(args.clone())) {
        Ok(Command::Help) | Ok(Command::Version) => {}
        Ok(Command::Run(a)) => {
            assert!(!a.references.is_empty());
            for seconds in [a.timeout, a.speed_time] {
                assert!((Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&seconds));
            }
            if a.output == Some(Output::Stdout) {
                assert!(!a.json && a.references.len() == 1);
            }
            if let Mode::List | Mode::Verify = a.mode {
                assert!(a
                    .references
                    .iter()
                    .all(|r| !matches!(r.target(), Target::Blob(_))));
            }
            for r in &a.references {
                let _ = (r.to_string(), r.name(), r.file_name());
                if let Some(repository) = r.repository() {
                    let _ = repository.registry().base_url();
                }
            }
            // Joined with an empty environment: settings, or a usage error.
            let password = a.username.as_ref().map(|_| "p".to_string());
            let fill = a.mode == Mode::Fill;
            match Settings::new(a, password, |_| None) {
                Ok(s) => {
                    assert!(!fill || s.cache.is_some());
                    // The globs match anything without panicking (or taking forever).
                    for arg in &args {
                        let _ = s.job.wants(&arg.to_string_lossy());
                    }
                }
                Err(e) => assert!(e.is_usage(), "{args:?}: not a usage error: {e}"),
            }
        }
        Err(e) => {
            assert!(e.is_usage(), "{args:?}: not a usage error: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
});
