//! Where credentials come from, first match wins, looked up only when a registry answers 401:
//! `-u` with `--password-stdin`, `OCIDL_USERNAME`/`OCIDL_PASSWORD`, docker's config.json
//! (credHelpers, credsStore, auths), podman's auth.json, then nothing. Against the real
//! htpasswd registry for Basic auth, and the fake server for token flows; credential helpers
//! are shell scripts put on PATH. Secrets never show in stdout or stderr, and never reach a
//! host other than the registry and its token realm.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::fake::{cdn, Content, FakeServer, Request, Response};
use crate::support::proxy::Proxy;
use crate::support::registry::Registry;
use crate::support::run::{ocidl, pull_plain, Ocidl, Output};
use crate::support::{
    assert_files, assert_tree, basic_auth, file_refs, random_bytes, write_file, TempDir,
};

const USER: &str = "ocidl";
const PASS: &str = "s3cret-Pw";
const WRONG: &str = "not-the-pw";
const REPO: &str = "private/tool";

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tool", random_bytes(12 * 1024, 61)),
        ("tool.json", br#"{"pkg":"tool"}"#.to_vec()),
        ("CHECKSUM", b"sums\n".to_vec()),
    ]
}

/// The real registry behind htpasswd (`USER`/`PASS`), holding `REPO:v1`.
fn auth_registry() -> Registry {
    let reg = Registry::start_with_auth(USER, PASS);
    reg.pusher().push_package(REPO, "v1", &file_refs(&files()));
    reg
}

/// base64 of `user:pass`, as docker's `auth` field holds it.
fn b64(user: &str, pass: &str) -> String {
    basic_auth(user, pass)
        .strip_prefix("Basic ")
        .unwrap()
        .to_string()
}

/// An `auths` entry in docker's preferred form.
fn auth(user: &str, pass: &str) -> Value {
    json!({ "auth": b64(user, pass) })
}

/// A file (docker's config.json or podman's auth.json) whose one `auths` entry, under `key`,
/// is `USER` with `pass`.
fn auths(key: &str, pass: &str) -> Value {
    json!({ "auths": { key: auth(USER, pass) } })
}

fn write_json(path: &Path, value: &Value) {
    write_file(
        path,
        serde_json::to_string_pretty(value).unwrap().as_bytes(),
    );
}

/// `dir/config.json` holding `config`; returns `dir`, the value for `DOCKER_CONFIG`.
fn docker_config(dir: PathBuf, config: Value) -> String {
    write_json(&dir.join("config.json"), &config);
    dir.to_string_lossy().into_owned()
}

/// `tmp/auth.json` holding `auths`; returns its path, the value for `REGISTRY_AUTH_FILE`.
fn auth_file(tmp: &TempDir, auths: Value) -> String {
    let path = tmp.join("auth.json");
    write_json(&path, &auths);
    path.to_string_lossy().into_owned()
}

/// A pull of `reference` into `tmp/out`, over plain HTTP.
fn pull_from(tmp: &TempDir, reference: &str) -> Ocidl {
    pull_plain(tmp.path(), &["-o", "out"], reference)
}

/// A pull of `REPO:v1` from the real registry.
fn pull(tmp: &TempDir, reg: &Registry) -> Ocidl {
    pull_from(tmp, &reg.reference(&format!("{REPO}:v1")))
}

/// `cmd`, with `config` as docker's config.json (in `tmp/docker`).
fn with_config(tmp: &TempDir, cmd: Ocidl, config: Value) -> Ocidl {
    let dir = docker_config(tmp.join("docker"), config);
    cmd.env("DOCKER_CONFIG", &dir)
}

/// `pull`, with `config` as docker's config.json (in `tmp/docker`).
fn pull_with_config(tmp: &TempDir, reg: &Registry, config: Value) -> Ocidl {
    with_config(tmp, pull(tmp, reg), config)
}

/// `cmd`, with `auths` as podman's auth.json (`tmp/auth.json`, named by `REGISTRY_AUTH_FILE`).
fn with_auth_file(tmp: &TempDir, cmd: Ocidl, auths: Value) -> Ocidl {
    cmd.env("REGISTRY_AUTH_FILE", &auth_file(tmp, auths))
}

/// `pull_with_config`, with the helpers made by `helper` in `tmp` on PATH.
fn pull_with_helpers(tmp: &TempDir, reg: &Registry, config: Value) -> Ocidl {
    pull_with_config(tmp, reg, config).env("PATH", &path_with_helpers(tmp.path()))
}

/// The pull worked, wrote every one of `files` and printed no secret.
fn assert_wrote(tmp: &TempDir, out: &Output, files: &[(&str, Vec<u8>)]) {
    out.assert_success();
    assert_files(&tmp.join("out"), files);
    assert_no_secret(out);
}

/// The pull of `REPO:v1` worked, wrote every file and printed nothing on stdout.
fn assert_pulled(tmp: &TempDir, out: &Output) {
    assert_wrote(tmp, out, &files());
    out.assert_stdout_empty();
}

/// The pull was refused for want of (right) credentials, and wrote nothing.
fn assert_refused(tmp: &TempDir, out: &Output) {
    out.assert_error(1, "authentication required");
    assert!(!tmp.join("out/tool").exists(), "a file was written");
    assert_no_secret(out);
}

/// `assert_pulled` when the credentials that win are the right ones (`pulls`), else
/// `assert_refused`: for tables of which source wins.
fn assert_outcome(tmp: &TempDir, out: &Output, pulls: bool) {
    if pulls {
        assert_pulled(tmp, out);
    } else {
        assert_refused(tmp, out);
    }
}

/// None of the test's secrets, plain or base64, in stdout or stderr.
fn assert_no_secret(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    for secret in [
        PASS.to_string(),
        WRONG.to_string(),
        b64(USER, PASS),
        b64(USER, WRONG),
        "refresh-".to_string(),
        "access-".to_string(),
    ] {
        assert!(
            !out.stderr.contains(&secret) && !stdout.contains(&secret),
            "{}: secret {secret:?} printed; stderr:\n{}\nstdout:\n{stdout}",
            out.command_line,
            out.stderr
        );
    }
}

/// `dir/bin/docker-credential-<name>`: appends `<args>|<stdin>` to the returned log file,
/// then runs `answer` (shell, with the registry name it was given in `$input`).
fn helper(dir: &Path, name: &str, answer: &str) -> PathBuf {
    let log = dir.join(format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\ninput=$(cat)\nprintf '%s|%s\\n' \"$*\" \"$input\" >> '{}'\n{answer}\n",
        log.display()
    );
    let path = dir.join("bin").join(format!("docker-credential-{name}"));
    write_file(&path, script.as_bytes());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    log
}

/// A helper answer with these credentials, as docker-credential-pass and friends print it.
fn answers(user: &str, secret: &str) -> String {
    format!(
        "printf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}\\n' \"$input\" '{user}' '{secret}'"
    )
}

/// PATH with `dir/bin` first.
fn path_with_helpers(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The lines a helper logged (`<args>|<stdin>`), none when it never ran.
fn helper_calls(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

// ---- docker's config.json, auths ----

#[test]
fn docker_config_auths_entries_log_in() {
    let reg = auth_registry();
    let host = reg.host();
    for (key, entry) in [
        (host.clone(), auth(USER, PASS)),
        (format!("http://{host}/"), auth(USER, PASS)),
        (format!("https://{host}"), auth(USER, PASS)),
        (host.clone(), json!({ "username": USER, "password": PASS })),
    ] {
        let tmp = TempDir::new();
        let out = pull_with_config(
            &tmp,
            &reg,
            json!({ "auths": { "other.example": auth("x", "y"), key.clone(): entry } }),
        )
        .run();
        assert_pulled(&tmp, &out);
    }
}

#[test]
fn docker_config_wrong_password_is_refused_and_not_printed() {
    let reg = auth_registry();
    let tmp = TempDir::new();
    let out = pull_with_config(&tmp, &reg, auths(&reg.host(), WRONG)).run();
    assert_refused(&tmp, &out);
}

#[test]
fn docker_config_entry_for_another_host_is_not_used() {
    let reg = auth_registry();
    let tmp = TempDir::new();
    // Same address, another port: another registry.
    let other = format!("127.0.0.1:{}", reg.port() + 1);
    let out = pull_with_config(&tmp, &reg, auths(&other, PASS)).run();
    assert_refused(&tmp, &out);
}

#[test]
fn docker_config_key_with_a_path_matches_by_host() {
    // Docker compares keys by host: `https://host/some/path` is `host`.
    let reg = auth_registry();
    let tmp = TempDir::new();
    let key = format!("https://{}/some/path", reg.host());
    let out = pull_with_config(&tmp, &reg, auths(&key, PASS)).run();
    assert_pulled(&tmp, &out);
}

#[test]
fn malformed_auth_entry_is_an_error_that_does_not_quote_it() {
    let reg = auth_registry();
    let tmp = TempDir::new();
    // Valid base64 (of `refresh-nocolon`), but not of user:pass.
    let not_a_pair = "cmVmcmVzaC1ub2NvbG9u";
    for entry in [
        json!({ "auth": "!!refresh-not-base64!!" }),
        json!({ "auth": not_a_pair }),
    ] {
        let out = pull_with_config(
            &tmp,
            &reg,
            json!({ "auths": { reg.host(): entry.clone() } }),
        )
        .run();
        let line = out.assert_error(1, "config.json");
        assert!(!line.contains(entry["auth"].as_str().unwrap()), "{line}");
        assert_no_secret(&out);
    }
    assert!(!tmp.join("out").exists());
}

#[test]
fn home_docker_config_is_read_when_docker_config_is_unset() {
    let reg = auth_registry();
    let tmp = TempDir::new();
    let home = tmp.join("home");
    docker_config(home.join(".docker"), auths(&reg.host(), PASS));
    // An empty DOCKER_CONFIG counts as unset, as for docker.
    let out = pull(&tmp, &reg)
        .env("HOME", &home.to_string_lossy())
        .env("DOCKER_CONFIG", "")
        .run();
    assert_pulled(&tmp, &out);
}

#[test]
fn docker_config_variable_wins_over_home() {
    let reg = auth_registry();
    // The password in $DOCKER_CONFIG's file, the one in ~/.docker's, whether the pull gets in.
    for (variable, home, pulls) in [(PASS, WRONG, true), (WRONG, PASS, false)] {
        let tmp = TempDir::new();
        let home_dir = tmp.join("home");
        docker_config(home_dir.join(".docker"), auths(&reg.host(), home));
        let out = pull_with_config(&tmp, &reg, auths(&reg.host(), variable))
            .env("HOME", &home_dir.to_string_lossy())
            .run();
        assert_outcome(&tmp, &out, pulls);
    }
}

#[test]
fn empty_auths_entry_is_skipped() {
    // Docker Desktop leaves `{}` behind for hosts whose secret is in its store: no
    // credentials there, so the next source (auth.json) answers.
    let reg = auth_registry();
    let tmp = TempDir::new();
    let empty = pull_with_config(&tmp, &reg, json!({ "auths": { reg.host(): {} } }));
    let out = with_auth_file(&tmp, empty, auths(&reg.host(), PASS)).run();
    assert_pulled(&tmp, &out);
}

// ---- credential helpers ----

#[test]
fn cred_helpers_entry_runs_that_helper_first() {
    let reg = auth_registry();
    let tmp = TempDir::new();
    let right = helper(tmp.path(), "ocidl-test", &answers(USER, PASS));
    let store = helper(tmp.path(), "ocidl-store", &answers(USER, WRONG));
    let config = json!({
        "credHelpers": { "other.example": "ocidl-store", format!("https://{}", reg.host()): "ocidl-test" },
        "credsStore": "ocidl-store",
        "auths": { reg.host(): auth(USER, WRONG) },
    });
    let out = pull_with_helpers(&tmp, &reg, config).run();
    assert_pulled(&tmp, &out);
    // Run as docker runs it: `get`, the registry on stdin; once for the whole run.
    assert_eq!(helper_calls(&right), [format!("get|{}", reg.host())]);
    assert_eq!(helper_calls(&store), Vec::<String>::new(), "the store ran");
}

#[test]
fn creds_store_answers_for_hosts_without_a_helper() {
    let reg = auth_registry();
    let tmp = TempDir::new();
    let store = helper(tmp.path(), "ocidl-store", &answers(USER, PASS));
    let out = pull_with_helpers(
        &tmp,
        &reg,
        json!({
            "credHelpers": { "other.example": "ocidl-missing-helper" },
            "credsStore": "ocidl-store",
            // The store wins over the file's own entry, as in docker.
            "auths": { reg.host(): auth(USER, WRONG) },
        }),
    )
    .run();
    assert_pulled(&tmp, &out);
    assert_eq!(helper_calls(&store), [format!("get|{}", reg.host())]);
}

#[test]
fn missing_helper_is_an_error_that_names_it() {
    let reg = auth_registry();
    for config in [
        json!({ "credsStore": "ocidl-no-such-helper" }),
        json!({ "credHelpers": { reg.host(): "ocidl-no-such-helper" } }),
    ] {
        let tmp = TempDir::new();
        let out = pull_with_config(&tmp, &reg, config).run();
        out.assert_error(1, "docker-credential-ocidl-no-such-helper");
        assert_tree(tmp.path(), &["docker", "docker/config.json"]);
    }
}

#[test]
fn helper_without_credentials_for_the_host_gives_none() {
    let reg = auth_registry();
    // A pull with a credential store that knows nothing.
    let pull_with_empty_store = |tmp: &TempDir| {
        let not_found = "echo 'credentials not found in native keychain'; exit 1";
        helper(tmp.path(), "ocidl-empty", not_found);
        pull_with_helpers(tmp, &reg, json!({ "credsStore": "ocidl-empty" }))
    };

    // Nothing else to offer: the registry's refusal is the error, not the helper.
    let tmp = TempDir::new();
    let out = pull_with_empty_store(&tmp).run();
    assert_refused(&tmp, &out);
    assert!(
        out.error_line("docker-credential").is_none(),
        "not-found reported as a helper failure:\n{}",
        out.stderr
    );

    // The next source answers.
    let tmp = TempDir::new();
    let out = with_auth_file(&tmp, pull_with_empty_store(&tmp), auths(&reg.host(), PASS)).run();
    assert_pulled(&tmp, &out);
}

#[test]
fn failing_helper_is_an_error_that_does_not_repeat_its_output() {
    let reg = auth_registry();
    let tmp = TempDir::new();
    helper(
        tmp.path(),
        "ocidl-broken",
        &format!("echo 'half an answer {PASS}'; echo 'stderr {PASS}' >&2; exit 3"),
    );
    let out = pull_with_helpers(&tmp, &reg, json!({ "credsStore": "ocidl-broken" })).run();
    out.assert_error(1, "docker-credential-ocidl-broken");
    assert_no_secret(&out);
}

#[test]
fn credentials_are_looked_up_only_when_the_registry_asks() {
    // An open registry never answers 401: a missing helper must not matter, and a present
    // one must not run.
    let reg = Registry::start();
    reg.pusher().push_package(REPO, "v1", &file_refs(&files()));
    let tmp = TempDir::new();
    let log = helper(tmp.path(), "ocidl-spy", &answers(USER, PASS));
    for config in [
        json!({ "credsStore": "ocidl-no-such-helper" }),
        json!({ "credsStore": "ocidl-spy" }),
        json!({ "auths": { reg.host(): { "auth": "!!not base64!!" } } }),
    ] {
        let out = pull_with_helpers(&tmp, &reg, config).run();
        out.assert_success();
        assert_files(&tmp.join("out"), &files());
        fs::remove_dir_all(tmp.join("out")).unwrap();
    }
    assert_eq!(helper_calls(&log), Vec::<String>::new(), "the helper ran");
}

// ---- podman's auth.json ----

#[test]
fn auth_json_is_found_where_podman_keeps_it() {
    let reg = auth_registry();
    let right = auths(&reg.host(), PASS);
    let wrong = auths(&reg.host(), WRONG);
    let xdg = "run/containers/auth.json";
    let home = "home/.config/containers/auth.json";
    // The files written (paths under the test's directory), the variables set (to paths
    // under it; an empty value stays empty: DOCKER_CONFIG="" counts as unset), and whether
    // the pull gets in.
    for (files, vars, pulls) in [
        // $REGISTRY_AUTH_FILE, over $XDG_RUNTIME_DIR's.
        (
            vec![("my-auth.json", &right), (xdg, &wrong)],
            vec![
                ("REGISTRY_AUTH_FILE", "my-auth.json"),
                ("XDG_RUNTIME_DIR", "run"),
            ],
            true,
        ),
        // $XDG_RUNTIME_DIR/containers/auth.json, over ~/.config's.
        (
            vec![(xdg, &right), (home, &wrong)],
            vec![("XDG_RUNTIME_DIR", "run"), ("HOME", "home")],
            true,
        ),
        // ~/.config/containers/auth.json.
        (
            vec![(home, &right)],
            vec![("HOME", "home"), ("DOCKER_CONFIG", "")],
            true,
        ),
        // And the XDG one really is read: wrong there means refused.
        (
            vec![(xdg, &wrong), (home, &right)],
            vec![("XDG_RUNTIME_DIR", "run"), ("HOME", "home")],
            false,
        ),
    ] {
        let tmp = TempDir::new();
        for (path, contents) in files {
            write_json(&tmp.join(path), contents);
        }
        let mut cmd = pull(&tmp, &reg);
        for (name, path) in vars {
            let value = match path {
                "" => String::new(),
                path => tmp.join(path).to_string_lossy().into_owned(),
            };
            cmd = cmd.env(name, &value);
        }
        assert_outcome(&tmp, &cmd.run(), pulls);
    }
}

#[test]
fn auth_json_longest_namespace_prefix_wins() {
    let reg = auth_registry();
    let host = reg.host();
    for (entries, pulls) in [
        // The namespace entry beats the host entry.
        (
            json!({ host.clone(): auth(USER, WRONG), format!("{host}/private"): auth(USER, PASS) }),
            true,
        ),
        // Longer keys that are not a prefix of host/repository by whole segments lose.
        (
            json!({
                host.clone(): auth(USER, PASS),
                format!("{host}/priv"): auth(USER, WRONG),
                format!("{host}/private/tool/x"): auth(USER, WRONG),
                format!("{host}/private/toolbox"): auth(USER, WRONG),
            }),
            true,
        ),
        // A namespace entry for this repository wins, even when wrong.
        (
            json!({ host.clone(): auth(USER, PASS), format!("https://{host}/private"): auth(USER, WRONG) }),
            false,
        ),
    ] {
        let tmp = TempDir::new();
        let out = with_auth_file(&tmp, pull(&tmp, &reg), json!({ "auths": entries })).run();
        assert_outcome(&tmp, &out, pulls);
    }
}

#[test]
fn auth_json_key_naming_the_repository_itself_matches() {
    // containers-auth.json(5): a key may name a whole repository, `host/namespace/repo`;
    // it is the longest, so it beats the namespace above it.
    let reg = auth_registry();
    let host = reg.host();
    let tmp = TempDir::new();
    let entries = json!({ "auths": {
        format!("{host}/private"): auth(USER, WRONG),
        format!("{host}/{REPO}"): auth(USER, PASS),
    } });
    let out = with_auth_file(&tmp, pull(&tmp, &reg), entries).run();
    assert_pulled(&tmp, &out);
}

#[test]
fn auth_json_namespaces_apply_per_repository_within_one_run() {
    // Two repositories of one registry, each with its own namespace entry in auth.json: each
    // reference gets its own, even in one run. Only `team/app`'s entry is right.
    let reg = Registry::start_with_auth(USER, PASS);
    let pusher = reg.pusher();
    pusher.push_package("team/app", "v1", &[("app", b"team app")]);
    pusher.push_package("other/app", "v1", &[("app", b"other app")]);
    let host = reg.host();
    let tmp = TempDir::new();
    let file = auth_file(
        &tmp,
        json!({ "auths": {
            format!("{host}/team"): auth(USER, PASS),
            format!("{host}/other"): auth(USER, WRONG),
        } }),
    );
    for order in [["team", "other"], ["other", "team"]] {
        let out = ocidl(tmp.path())
            .arg("--plain-http")
            .args(order.map(|ns| reg.reference(&format!("{ns}/app:v1"))))
            .args(["-o", "out"])
            .env("REGISTRY_AUTH_FILE", &file)
            .run();
        out.assert_code(1);
        assert!(
            out.error_line("other/app")
                .is_some_and(|l| l.contains("authentication required")),
            "order {order:?}: other/app was not refused:\n{}",
            out.stderr
        );
        assert!(
            out.error_line("team/app").is_none(),
            "order {order:?}: team/app failed:\n{}",
            out.stderr
        );
        assert_no_secret(&out);
        fs::remove_dir_all(tmp.join("out")).ok();
    }
}

#[test]
fn empty_entry_gives_way_to_another_matching_entry() {
    // `{}` holds no credentials; skipping it leaves the other entry for the host as the match.
    let reg = auth_registry();
    let host = reg.host();

    // auth.json: an empty namespace entry, and the host's.
    let tmp = TempDir::new();
    let entries =
        json!({ "auths": { host.clone(): auth(USER, PASS), format!("{host}/private"): {} } });
    let out = with_auth_file(&tmp, pull(&tmp, &reg), entries).run();
    assert_pulled(&tmp, &out);

    // config.json: two spellings of the host, one of them empty (as Docker Desktop leaves).
    let tmp = TempDir::new();
    let out = pull_with_config(
        &tmp,
        &reg,
        json!({ "auths": { host.clone(): auth(USER, PASS), format!("https://{host}"): {} } }),
    )
    .run();
    assert_pulled(&tmp, &out);
}

// ---- the order of sources ----

#[test]
fn username_flag_wins_over_the_environment() {
    let reg = auth_registry();
    // The password on stdin, the one in the environment, whether the pull gets in.
    for (stdin, environment, pulls) in [(PASS, WRONG, true), (WRONG, PASS, false)] {
        let tmp = TempDir::new();
        let out = pull(&tmp, &reg)
            .args(["-u", USER, "--password-stdin"])
            .stdin(format!("{stdin}\n").as_bytes())
            .env("OCIDL_USERNAME", USER)
            .env("OCIDL_PASSWORD", environment)
            .run();
        assert_outcome(&tmp, &out, pulls);
    }
}

#[test]
fn environment_credentials_log_in_and_win_over_docker_config() {
    let reg = auth_registry();
    // The password in the environment, the one in config.json (if any), whether the pull
    // gets in.
    for (environment, config, pulls) in [
        (PASS, None, true),
        (PASS, Some(WRONG), true),
        (WRONG, Some(PASS), false),
    ] {
        let tmp = TempDir::new();
        let cmd = match config {
            Some(pass) => pull_with_config(&tmp, &reg, auths(&reg.host(), pass)),
            None => pull(&tmp, &reg),
        };
        let out = cmd
            .env("OCIDL_USERNAME", USER)
            .env("OCIDL_PASSWORD", environment)
            .run();
        assert_outcome(&tmp, &out, pulls);
    }
}

#[test]
fn docker_config_wins_over_auth_json() {
    let reg = auth_registry();
    for (docker, podman, pulls) in [(PASS, WRONG, true), (WRONG, PASS, false)] {
        let tmp = TempDir::new();
        let docker = pull_with_config(&tmp, &reg, auths(&reg.host(), docker));
        let out = with_auth_file(&tmp, docker, auths(&reg.host(), podman)).run();
        assert_outcome(&tmp, &out, pulls);
    }
}

#[test]
fn half_of_the_environment_pair_is_a_usage_error_before_any_request() {
    let trap = FakeServer::start(|_| Response::not_found());
    let tmp = TempDir::new();
    for (name, value) in [("OCIDL_USERNAME", USER), ("OCIDL_PASSWORD", PASS)] {
        let out = ocidl(tmp.path())
            .args(["--plain-http", &trap.reference("a/b:c")])
            .env(name, value)
            .run();
        out.assert_code(2);
        assert!(
            out.stderr.contains("OCIDL_USERNAME") && out.stderr.contains("OCIDL_PASSWORD"),
            "{}",
            out.stderr
        );
        assert_no_secret(&out);
    }
    assert_eq!(trap.connections(), 0, "{:?}", trap.requests());
}

// ---- token flows (fake server) ----

const TOKEN_REPO: &str = "pkgforge/x";

fn token_content() -> (Arc<Content>, Vec<(&'static str, Vec<u8>)>) {
    let files = vec![
        ("x", random_bytes(20 * 1024, 62)),
        ("x.json", b"{}".to_vec()),
    ];
    let mut content = Content::new();
    content.add_package(TOKEN_REPO, "tag", &file_refs(&files));
    (Arc::new(content), files)
}

/// A pull of `TOKEN_REPO:tag` from the fake server.
fn token_pull(tmp: &TempDir, server: &FakeServer) -> Ocidl {
    pull_from(tmp, &server.reference(&format!("{TOKEN_REPO}:tag")))
}

/// A registry answering requests that carry `Bearer <access>` and challenging the rest with
/// a Bearer challenge whose realm is `realm` (`None`: `/token` on itself).
fn bearer_registry(
    content: Arc<Content>,
    access: &'static str,
    realm: Option<String>,
) -> FakeServer {
    FakeServer::start(move |req: &Request| {
        if req.path() == "/token" {
            return token_endpoint(req, access);
        }
        if req.authorization() == Some(format!("Bearer {access}").as_str()) {
            return content.serve(req);
        }
        let scope = format!("repository:{TOKEN_REPO}:pull");
        match &realm {
            Some(realm) => Response::bearer_challenge(realm, "fake-svc", &scope),
            None => Response::bearer_challenge_here(req, "fake-svc", &scope),
        }
    })
}

/// A token endpoint: an OAuth2 refresh grant (POST) with `refresh-ok` gets `access_token`;
/// a GET with `USER`/`PASS` as Basic gets `token`; anything else 401.
fn token_endpoint(req: &Request, access: &str) -> Response {
    match req.method.as_str() {
        "POST" => {
            let form = form(&req.body);
            if form.get("refresh_token").map(String::as_str) == Some("refresh-ok")
                && form.get("grant_type").map(String::as_str) == Some("refresh_token")
            {
                Response::json(&json!({ "access_token": access, "expires_in": 300 }))
            } else {
                Response::error(401, "UNAUTHORIZED", "bad refresh token")
            }
        }
        _ if req.authorization() == Some(basic_auth(USER, PASS).as_str()) => {
            Response::json(&json!({ "token": access }))
        }
        _ => Response::error(401, "UNAUTHORIZED", "bad credentials"),
    }
}

/// An `application/x-www-form-urlencoded` body, decoded.
fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    let fake = Request {
        method: "GET".into(),
        target: format!("/?{}", String::from_utf8_lossy(body)),
        headers: Vec::new(),
        body: Vec::new(),
        at: std::time::Instant::now(),
    };
    [
        "grant_type",
        "client_id",
        "scope",
        "refresh_token",
        "service",
    ]
    .iter()
    .filter_map(|k| fake.query(k).map(|v| (k.to_string(), v)))
    .collect()
}

#[test]
fn identity_token_is_traded_at_the_realm_with_a_refresh_grant() {
    let (content, files) = token_content();
    let server = bearer_registry(content, "access-1", None);
    let tmp = TempDir::new();
    let config =
        json!({ "auths": { server.host(): { "auth": "", "identitytoken": "refresh-ok" } } });
    let out = with_config(&tmp, token_pull(&tmp, &server), config).run();
    assert_wrote(&tmp, &out, &files);

    let grants: Vec<Request> = server.requests_to("/token");
    assert_eq!(grants.len(), 1, "{grants:?}");
    let grant = &grants[0];
    assert_eq!(grant.method, "POST");
    assert_eq!(
        grant.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = form(&grant.body);
    let scope = format!("repository:{TOKEN_REPO}:pull");
    for (field, want) in [
        ("grant_type", "refresh_token"),
        ("client_id", "ocidl"),
        ("refresh_token", "refresh-ok"),
        ("service", "fake-svc"),
        ("scope", scope.as_str()),
    ] {
        assert_eq!(form.get(field).map(String::as_str), Some(want), "{field}");
    }
    // The refresh token itself never reaches the registry API.
    for r in server.requests_to("/v2/") {
        let auth = r.authorization().unwrap_or_default();
        assert!(
            !auth.contains("refresh-ok") && !auth.starts_with("Basic"),
            "{r:?}"
        );
    }
}

#[test]
fn helper_token_username_means_an_identity_token() {
    let (content, files) = token_content();
    let server = bearer_registry(content, "access-2", None);
    let tmp = TempDir::new();
    let log = helper(tmp.path(), "ocidl-oauth", &answers("<token>", "refresh-ok"));
    let config = json!({ "credHelpers": { server.host(): "ocidl-oauth" } });
    let out = with_config(&tmp, token_pull(&tmp, &server), config)
        .env("PATH", &path_with_helpers(tmp.path()))
        .run();
    assert_wrote(&tmp, &out, &files);
    assert_eq!(helper_calls(&log), [format!("get|{}", server.host())]);
    let grants = server.requests_to("/token");
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].method, "POST", "{grants:?}");
    assert_eq!(
        form(&grants[0].body)
            .get("refresh_token")
            .map(String::as_str),
        Some("refresh-ok")
    );
}

#[test]
fn config_credentials_go_to_the_token_realm_as_basic_and_nowhere_else() {
    // The realm is another server (another port), as ghcr.io and Docker Hub have it.
    let (content, files) = token_content();
    let realm_server = FakeServer::start(|req: &Request| token_endpoint(req, "access-3"));
    let server = bearer_registry(content, "access-3", Some(realm_server.url("/token")));
    let tmp = TempDir::new();
    let config = auths(&server.host(), PASS);
    let out = with_config(&tmp, token_pull(&tmp, &server), config).run();
    assert_wrote(&tmp, &out, &files);

    let tokens = realm_server.requests();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(
        tokens[0].authorization(),
        Some(basic_auth(USER, PASS).as_str())
    );
    for r in server.requests() {
        assert!(
            r.authorization().is_none() || r.authorization() == Some("Bearer access-3"),
            "the registry got {:?} on {}",
            r.authorization(),
            r.target
        );
    }
}

#[test]
fn redirect_to_another_origin_does_not_carry_the_users_credentials() {
    let (content, files) = token_content();
    let cdn = cdn(Arc::clone(&content));
    let cdn_base = cdn.url("/blob/");
    let server = FakeServer::start(move |req: &Request| {
        if req.authorization() != Some(basic_auth(USER, PASS).as_str()) {
            return Response::error(401, "UNAUTHORIZED", "log in")
                .header("WWW-Authenticate", "Basic realm=\"fake\"");
        }
        match req.path().rsplit_once("/blobs/") {
            Some((_, digest)) => Response::redirect(307, &format!("{cdn_base}{digest}")),
            None => content.serve(req),
        }
    });
    let tmp = TempDir::new();
    let config = auths(&server.host(), PASS);
    let out = with_config(&tmp, token_pull(&tmp, &server), config).run();
    assert_wrote(&tmp, &out, &files);
    let hops = cdn.requests();
    assert!(hops.len() >= files.len(), "{hops:?}");
    for r in &hops {
        assert_eq!(
            r.authorization(),
            None,
            "the CDN got credentials on {}",
            r.target
        );
    }
    assert!(
        server
            .requests_to(&format!("/v2/{TOKEN_REPO}/blobs/"))
            .iter()
            .all(|r| r.authorization() == Some(basic_auth(USER, PASS).as_str())),
        "{:?}",
        server.requests()
    );
}

// ---- Docker Hub's names ----

#[test]
fn docker_hub_keys_all_name_docker_hub() {
    // Offline, Docker Hub is the real registry behind a proxy that routes
    // registry-1.docker.io:80 to it; `--plain-http` keeps the hop plain HTTP.
    let reg = Registry::start_with_auth(USER, PASS);
    reg.pusher()
        .push_package("library/tool", "v1", &file_refs(&files()));
    let proxy = Proxy::with_routes(&[("registry-1.docker.io:80", reg.port())]);

    // First make sure this build honours HTTP_PROXY with a loopback target, so nothing below
    // can reach the real Docker Hub.
    let tmp = TempDir::new();
    ocidl(tmp.path())
        .args([
            "--plain-http",
            "--retries",
            "0",
            &reg.reference("library/tool:v1"),
        ])
        .env("HTTP_PROXY", &proxy.url())
        .run()
        .assert_error(1, "authentication required");
    assert!(
        !proxy.seen().is_empty(),
        "HTTP_PROXY was ignored: Docker Hub cannot be faked offline"
    );

    let hub_pull = |tmp: &TempDir, reference: &str| {
        ocidl(tmp.path())
            .args(["--plain-http", "--retries", "0", "-o", "out", reference])
            .env("HTTP_PROXY", &proxy.url())
    };
    for key in [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "registry-1.docker.io",
        "docker.io",
        "https://registry-1.docker.io/",
    ] {
        for reference in [
            "tool:v1",
            "docker.io/library/tool:v1",
            "index.docker.io/library/tool:v1",
        ] {
            let tmp = TempDir::new();
            let out = with_config(&tmp, hub_pull(&tmp, reference), auths(key, PASS)).run();
            assert_pulled(&tmp, &out);
        }
    }
    // Whether the proxy was asked to CONNECT or to forward, the host was Docker Hub's.
    let hub = proxy.authorities();
    assert!(
        hub.iter().any(|a| a == "registry-1.docker.io:80"),
        "{hub:?}"
    );

    // A helper for Docker Hub is asked about docker's key for it.
    let tmp = TempDir::new();
    let log = helper(tmp.path(), "ocidl-hub", &answers(USER, PASS));
    let config = json!({ "credHelpers": { "https://index.docker.io/v1/": "ocidl-hub" } });
    let out = with_config(&tmp, hub_pull(&tmp, "tool:v1"), config)
        .env("PATH", &path_with_helpers(tmp.path()))
        .run();
    assert_pulled(&tmp, &out);
    assert_eq!(helper_calls(&log), ["get|https://index.docker.io/v1/"]);

    // An entry for another registry is not Docker Hub's.
    let tmp = TempDir::new();
    let config =
        json!({ "auths": { "docker.example": auth(USER, PASS), reg.host(): auth(USER, PASS) } });
    let out = with_config(&tmp, hub_pull(&tmp, "tool:v1"), config).run();
    assert_refused(&tmp, &out);
}

// ---- plain-HTTP mirrors named after an HTTPS registry (attack review of issue 16) ----

/// `docker login ghcr.io` (a bare key, or a credential store) and `OCIDL_MIRROR=http://ghcr.io`
/// (the issue's own example), on a run that pulls from another registry: the plain-HTTP
/// request to ghcr.io crosses the path (an HTTP proxy stands for it here, routing ghcr.io:80
/// to a scripted server), which answers 401 Basic. The README says this "never carries the
/// user's ghcr.io token in clear"; it must not, whichever registry the command line names,
/// whether the secret is in `auths`, a `credsStore`, or a `credHelpers` entry whose key even
/// says `https://`.
#[test]
fn a_plain_http_mirror_on_an_https_registrys_host_never_gets_its_stored_secret() {
    let blob = random_bytes(4096, 66);
    let digest = crate::support::digest_of(&blob);
    let mut leaks = Vec::new();
    for store in ["auths", "credsStore", "credHelpers"] {
        let tmp = TempDir::new();
        let mut content = Content::new();
        content.add_blob(&blob);
        let registry = FakeServer::start(move |req: &Request| content.serve(req));
        let on_path = FakeServer::start(|_: &Request| {
            Response::new(401).header("WWW-Authenticate", "Basic realm=\"ghcr\"")
        });
        let proxy = Proxy::with_routes(&[("ghcr.io:80", on_path.port())]);
        let log = helper(tmp.path(), "ocidl-store", &answers(USER, PASS));
        let config = match store {
            "auths" => auths("ghcr.io", PASS),
            "credsStore" => json!({ "credsStore": "ocidl-store" }),
            // A key that says https: the README says it "never goes over plain HTTP".
            _ => json!({ "credHelpers": { "https://ghcr.io": "ocidl-store" } }),
        };
        let cmd = ocidl(tmp.path())
            .env("OCIDL_MIRROR", "http://ghcr.io")
            .env("HTTP_PROXY", &proxy.url())
            .env("NO_PROXY", "127.0.0.1")
            .env("PATH", &path_with_helpers(tmp.path()))
            .args(["--plain-http", "--retries", "0", "-o", "blob"])
            .arg(registry.reference(&format!("{REPO}@{digest}")));
        let out = with_config(&tmp, cmd, config).run();
        // The run itself must not fail for it: the registry has the blob.
        assert!(
            !on_path.requests().is_empty(),
            "{store}: the mirror was never asked: {:?}",
            proxy.seen()
        );
        // ghcr's public `QQ==` shortcut is no secret; anything else is the user's.
        let leaked: Vec<String> = on_path
            .requests()
            .iter()
            .filter_map(|r| r.authorization().map(str::to_string))
            .filter(|a| a != "Bearer QQ==")
            .collect();
        if !leaked.is_empty() {
            leaks.push(format!(
                "{store}: {leaked:?} (helper calls: {:?})",
                helper_calls(&log)
            ));
        }
        out.assert_success();
        assert_no_secret(&out);
    }
    assert!(
        leaks.is_empty(),
        "the ghcr.io secret went over plain HTTP to whoever answered http://ghcr.io: {leaks:?}"
    );
}

/// The issue's own case, which the fix covers: the command line names ghcr.io over HTTPS and
/// `OCIDL_MIRROR` names it over plain HTTP. Written `http://GHCR.IO` (a host name is
/// case-insensitive, and ocidl takes it), the mirror is no longer "the host the command line
/// names": a credential store is asked for `GHCR.IO` and its answer goes in clear.
#[test]
fn a_plain_http_mirror_spelled_in_capitals_is_still_the_https_registrys_host() {
    let blob = random_bytes(4096, 67);
    let digest = crate::support::digest_of(&blob);
    let tmp = TempDir::new();
    let on_path = FakeServer::start(|_: &Request| {
        Response::new(401).header("WWW-Authenticate", "Basic realm=\"ghcr\"")
    });
    // Plain HTTP to ghcr.io goes to the scripted server; TLS to ghcr.io:443 to a closed port.
    let closed = crate::support::free_port();
    let proxy = Proxy::with_routes(&[("ghcr.io:80", on_path.port()), ("ghcr.io:443", closed)]);
    let log = helper(tmp.path(), "ocidl-store", &answers(USER, PASS));
    let cmd = ocidl(tmp.path())
        .env("OCIDL_MIRROR", "http://GHCR.IO")
        .env("HTTP_PROXY", &proxy.url())
        .env("HTTPS_PROXY", &proxy.url())
        .env("PATH", &path_with_helpers(tmp.path()))
        .args(["--retries", "0", "--timeout", "5", "-o", "blob"])
        .arg(format!("ghcr.io/{REPO}@{digest}"));
    let out = with_config(&tmp, cmd, json!({ "credsStore": "ocidl-store" })).run();
    assert!(
        !on_path.requests().is_empty(),
        "the mirror was never asked: {:?}",
        proxy.seen()
    );
    let leaked: Vec<String> = on_path
        .requests()
        .iter()
        .filter_map(|r| r.authorization().map(str::to_string))
        .filter(|a| a != "Bearer QQ==")
        .collect();
    assert!(
        leaked.is_empty(),
        "http://GHCR.IO got the secret stored for ghcr.io in clear: {leaked:?} (helper calls: {:?})",
        helper_calls(&log)
    );
    assert_no_secret(&out);
}
