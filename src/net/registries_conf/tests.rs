use super::*;

fn entries(text: &str) -> Vec<Entry> {
    parse(text, Path::new("registries.conf")).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The one string value `key = ...` decodes to.
fn string(value: &str) -> std::result::Result<String, Fail> {
    let mut c = Cursor::new(value);
    match c.value()? {
        Value::Text(t) if c.rest().is_empty() => Ok(t),
        other => panic!("{value:?}: {other:?}, left {:?}", c.rest()),
    }
}

#[test]
fn errors_name_the_line() {
    for (text, line, says) in [
        ("[[registry.mirror]]\nlocation = \"a.io\"", 1, "before any"),
        ("[[registry]]\nprefix = \"a.io\"\nblocked = \"yes\"", 3, "true or false"),
        ("[[registry]]\nprefix = a.io", 2, "expected a string"),
        ("[[registry]]\nprefix = \"a.io", 2, "unterminated"),
        ("[[registry]]\nlocation = \"Not Valid\"", 1, "location"),
        ("[[registry]]\ninsecure = true", 1, "without prefix or location"),
        ("[[registry]]\nprefix = \"a.io\"\n[[registry.mirror]]\ninsecure = true", 3, "without location"),
        ("[[registry]]\nprefix = \"a.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\npull-from-mirror = \"some\"", 5, "pull-from-mirror"),
        ("just words", 1, "key = value"),
        ("[broken", 1, "table header"),
        ("[registry]\nprefix = \"a.io\"", 1, "unknown table"),
        ("[[registry.mirrors]]", 1, "unknown table"),
        ("x = [1,\n2", 1, "not closed"),
    ] {
        match parse(text, Path::new("r.conf")) {
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(&format!("r.conf: line {line}:")), "{text:?}: {e}");
                assert!(e.contains(says), "{text:?}: {e}");
            }
            Ok(_) => panic!("{text:?} was accepted"),
        }
    }
}

#[test]
fn headers_may_have_spaces() {
    let e = entries("[[ registry ]]\nprefix = \"a.io\"\nblocked = true\n[[ registry . mirror ]]\nlocation = \"m.io\"");
    assert_eq!(e.len(), 1);
    assert!(e[0].blocked);
    assert_eq!(e[0].mirrors.len(), 1);
}

/// Every kind of TOML value, as a line `x = VALUE` (with what follows on later lines).
const VALUES: &[&str] = &[
    // Integers (issue 16: `num_locks = 2048`).
    "2048",
    "+99",
    "-17",
    "0",
    "1_000",
    "0xDEADBEEF",
    "0xdead_beef",
    "0o755",
    "0b1101",
    // Floats.
    "3.1415",
    "-0.01",
    "5e+22",
    "1e06",
    "-2E-2",
    "6.626e-34",
    "224_617.445_991",
    "inf",
    "+inf",
    "-inf",
    "nan",
    "+nan",
    // Dates and times.
    "1979-05-27T07:32:00Z",
    "1979-05-27T00:32:00.999999-07:00",
    "1979-05-27 07:32:00Z",
    "1979-05-27T07:32:00",
    "1979-05-27",
    "07:32:00",
    "00:32:00.999999",
    // Booleans.
    "true",
    "false",
    // Basic strings and their escapes (issue 16: `\u0078`).
    r#""\u0078""#,
    r#""\U0001F600 \b\t\n\f\r\" \\""#,
    r#""a # not a comment, ] not a close""#,
    // Literal strings.
    r"'C:\Users\nodejs\templates'",
    r"'<\i\c*\s*>'",
    // Multi-line basic strings (issue 16: `"""`).
    "\"\"\"\nRoses are red\nViolets are blue\"\"\"",
    "\"\"\"\\\n  The quick brown \\\n\n  fox.\\\n  \"\"\"",
    "\"\"\"Here are two quotation marks: \"\". Simple enough.\"\"\"",
    "\"\"\"Here are fifteen: \"\"\\\"\"\"\\\"\"\"\\\"\"\"\\\"\"\"\\\".\"\"\"",
    "\"\"\"\"This,\" she said, \"is just a pointless statement.\"\"\"\"",
    "\"\"\"\n[[registry]]\nprefix = \"evil.io\"\nblocked = true\n\"\"\"",
    // Multi-line literal strings.
    "'''\nThe first newline is\ntrimmed in raw strings.\n   # and this is no comment\n'''",
    "''''That,' she said, 'is still pointless.''''",
    "'''I [dw]on't need \\d{2} apples'''",
    // Arrays: nested, mixed, over lines, with comments and trailing commas, holding
    // strings with `]`, `#` and `"`.
    "[ 1, 2, 3 ]",
    "[]",
    "[ [ 1, 2 ], [\"a\", 'b', \"\"\"c]\"\"\"], [[[]]] ]",
    "[\n  \"docker.io\", # a comment, with ] and \"\n  'quay.io]',\n  \"#\",\n]",
    "[ 0.1, 0.2, 1979-05-27, { x = 1 }, ]",
    "[\n\n]",
    // Inline tables, nested, with dotted and quoted keys.
    "{ first = \"Tom\", last = \"Preston-Werner\" }",
    "{}",
    "{ x = 1, y = { z = [ 1, { w = \"}\" } ] } }",
    "{ type.name = \"pug\", \"quoted key\" = 'v', 'lit' = 1 }",
    "{\n  a = 1, # TOML 1.1 allows lines here\n  b = 2,\n}",
];

#[test]
fn every_toml_value_is_passed_over_in_any_table() {
    for value in VALUES {
        for (before, after) in [
            // The top, before any table.
            ("", ""),
            // A table ocidl ignores, and an array of tables it ignores.
            ("[engine]\n", ""),
            ("[[engine.helper]]\n", ""),
            // ocidl's own tables, as a key it does not use.
            ("[[registry]]\nprefix = \"a.io\"\n", "blocked = true\n"),
            (
                "[[registry]]\nprefix = \"a.io\"\n[[registry.mirror]]\nlocation = \"m.io\"\n",
                "insecure = true\n",
            ),
        ] {
            for key in [
                "x",
                "num_locks",
                "a.b.c",
                "\"quoted key\"",
                "'lit'.bare",
                "x . \"y\"",
            ] {
                let text = format!("{before}{key} = {value}   # trailing comment\n{after}");
                let e = entries(&text);
                if before.starts_with("[[registry]]") {
                    assert_eq!(e.len(), 1, "{text}");
                    assert_eq!(e[0].prefix, "a.io");
                    if before.contains("mirror") {
                        assert_eq!(e[0].mirrors.len(), 1, "{text}");
                        assert_eq!(e[0].mirrors[0].location.to_string(), "http://m.io");
                    } else {
                        assert!(e[0].blocked, "{text}");
                    }
                } else {
                    assert!(e.is_empty(), "{text}");
                }
            }
        }
    }
}

#[test]
fn strings_are_decoded_where_ocidl_uses_them() {
    for (written, decoded) in [
        (r#""127.0.0.1:5000""#, "127.0.0.1:5000"),
        (r#""e\u0078ample.io""#, "example.io"),
        (r#""e\U00000078ample.io""#, "example.io"),
        (r#""ex\u0061mple.io/a\\b""#, "example.io/a\\b"),
        ("\"x\\t\\\"y\\\"\"", "x\t\"y\""),
        ("'example.io/\\u0078'", "example.io/\\u0078"),
        ("\"\"\"example.io\"\"\"", "example.io"),
        ("\"\"\"\nexample.io\"\"\"", "example.io"),
        ("\"\"\"\r\nexample.io\"\"\"", "example.io"),
        ("\"\"\"exam\\\n    ple.io\"\"\"", "example.io"),
        ("\"\"\"exam\\   \r\n\n  ple.io\"\"\"", "example.io"),
        ("'''\nexample.io'''", "example.io"),
        ("'''a\\u0078'''", "a\\u0078"),
        ("\"\"\"a\"\"\"\"", "a\""),
        ("'''a'''''", "a''"),
        ("\"\"\"a\nb\"\"\"", "a\nb"),
        ("\"\"\"a\r\nb\"\"\"", "a\nb"),
        ("'''a\r\nb'''", "a\nb"),
        ("\"snow \u{2603}\"", "snow \u{2603}"),
        // TOML 1.1.
        (r#""\x41\e""#, "A\u{1b}"),
    ] {
        assert_eq!(string(written), Ok(decoded.to_string()), "{written}");
    }
    // In the keys ocidl reads, from every form.
    let e = entries(concat!(
        "[[registry]]\n",
        "prefix = \"\"\"\n",
        "ghcr.io/pkgforg\\u0065\"\"\"\n",
        "location = '''internal.example/'''\n",
        "[[registry.mirror]]\n",
        "\"location\" = \"127.0.0.1:5000/c\\u0061che\"\n",
        "'insecure' = true\n",
        "\"pull-from\\u002dmirror\" = \"digest-only\"\n",
    ));
    assert_eq!(e[0].prefix, "ghcr.io/pkgforge");
    assert_eq!(
        e[0].location.as_ref().unwrap().to_string(),
        "internal.example"
    );
    assert_eq!(
        e[0].mirrors[0].location.to_string(),
        "http://127.0.0.1:5000/cache"
    );
    assert_eq!(e[0].mirrors[0].pull_from, PullFrom::DigestOnly);
}

#[test]
fn malformed_strings_and_values_are_errors() {
    for (value, says) in [
        (r#""\q""#, "unknown escape \\q"),
        (r#""\x4""#, "2 hex digits"),
        (r#""\u00""#, "4 hex digits"),
        (r#""\u+041""#, "4 hex digits"),
        (r#""\uD800""#, "4 hex digits"),
        (r#""\U00110000""#, "8 hex digits"),
        ("\"a\u{1}b\"", "control character"),
        ("\"\"\"a", "unterminated"),
        ("'''a''", "unterminated"),
        ("'a", "unterminated"),
        ("\"a\nb\"", "unterminated"),
        ("maybe", "expected a string, true, false"),
        ("", "or an inline table, not nothing"),
        ("[1 2]", "expected , or ]"),
        ("[1,,2]", "expected a string"),
        ("[1}", "expected , or ]"),
        ("{ a }", "key = value in an inline table"),
        ("{ a = 1 b = 2 }", "expected , or }"),
        ("[[[[[[[[", "not closed"),
    ] {
        let mut c = Cursor::new(value);
        match c.value() {
            Err((_, e)) => assert!(e.contains(says), "{value:?}: {e}"),
            Ok(v) => panic!("{value:?} gave {v:?}"),
        }
    }
    for (text, line, says) in [
        ("x = 1 2", 1, "unexpected 2"),
        ("x = \"a\" \"b\"", 1, "unexpected \"b\""),
        ("a\n\nx = \"\"\"\nlong\n", 1, "key = value"),
        ("x = 1\ny = \"\"\"\nlong\n", 2, "unterminated"),
        ("x = [\n1,\n2\n\"a\"]", 4, "expected , or ]"),
        ("x = 1 # a \u{1b} in a comment", 1, "control character"),
        ("x = 1\r", 1, "unexpected"),
        (
            "[[registry]]\nprefix = \"a.io\"\nprefix = \"b.io\"",
            3,
            "set twice",
        ),
        (
            "[[registry]]\nprefix = \"a.io\"\nlocation.host = \"b.io\"",
            3,
            "only as a plain key",
        ),
        (
            "[[registry]]\nprefix = \"a.io\"\nmirror = [{ location = \"m.io\" }]",
            3,
            "[[registry.mirror]] tables",
        ),
        (
            "[[registry]]\nprefix = \"a.io\"\nblocked = 1",
            3,
            "true or false, not a number",
        ),
        (
            "[[registry]]\nprefix = [\"a.io\"]",
            2,
            "takes a string, not an array",
        ),
        (
            "[[registry]]\nprefix = { host = \"a.io\" }",
            2,
            "not an inline table",
        ),
        (
            "registry = [{ prefix = \"a.io\", blocked = true }]",
            1,
            "[[registry]] tables",
        ),
        ("registry.prefix = \"a.io\"", 1, "[[registry]] tables"),
        (
            "[registries.block]\nregistries = [\"a.io\"]",
            1,
            "version 1",
        ),
        ("[\"registry\"]", 1, "unknown table"),
        ("[ [registry]]", 1, "table header"),
        ("[[registry] ]", 1, "table header"),
        ("x = 1\n[a\nb]", 2, "table header"),
    ] {
        match parse(text, Path::new("r.conf")) {
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains(&format!("r.conf: line {line}:")),
                    "{text:?}: {e}"
                );
                assert!(e.contains(says), "{text:?}: {e}");
            }
            Ok(_) => panic!("{text:?} was accepted"),
        }
    }
}

#[test]
fn deep_nesting_is_passed_over_without_recursion() {
    let deep = format!("x = {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
    assert!(entries(&deep).is_empty());
    let deep = format!("x = {}1{}\n", "{a=".repeat(100_000), "}".repeat(100_000));
    assert!(entries(&deep).is_empty());
}

#[test]
fn what_looks_like_our_tables_inside_values_is_not_read() {
    let e = entries(concat!(
        "note = \"\"\"\n[[registry]]\nprefix = \"x.io\"\nblocked = true\n\"\"\"\n",
        "list = [\n  \"]\", # ]\n  '''\n[[registry]]\n''',\n]\n",
        "[[registry]]\nprefix = \"a.io\" # [[registry]]\n",
    ));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].prefix, "a.io");
    assert!(!e[0].blocked);
}

#[test]
fn crlf_and_a_byte_order_mark_are_read() {
    let e = entries("\u{feff}# c\r\n[[registry]]\r\nprefix = \"a.io\"\r\nblocked = true\r\nx = [\r\n 1,\r\n]\r\n");
    assert!(e[0].blocked);
}
