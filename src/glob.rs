//! Shell-style patterns for `--include` and `--exclude`: `*` (any run of characters, `/`
//! included, since titles are names rather than paths to walk), `?` (one character), and
//! `[...]` (one of a set: `[abc]`, ranges `[a-z]`, negation `[!a]` or `[^a]`; `]` first is
//! literal). `\` makes the next character literal. Matching is on the whole title.

use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    Any,
    Star,
    Set {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl Glob {
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        matches_at(&self.tokens, &name)
    }
}

/// Iterative wildcard matching: on a mismatch, the last `*` takes one more character.
/// Linear in practice and never exponential, whatever the pattern.
fn matches_at(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(token) if token.accepts(name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((star_t, star_n)) => {
                t = star_t + 1;
                n = star_n + 1;
                star = Some((star_t, star_n + 1));
            }
            None => return false,
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

impl Token {
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::Any => true,
            Token::Star => false,
            Token::Set { negated, items } => {
                items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

impl FromStr for Glob {
    type Err = String;

    fn from_str(text: &str) -> Result<Glob, String> {
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Star,
                '?' => Token::Any,
                '\\' => Token::Char(
                    chars
                        .next()
                        .ok_or_else(|| format!("pattern '{text}' ends with '\\'"))?,
                ),
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut items = Vec::new();
                    let mut first = true;
                    loop {
                        let c = chars
                            .next()
                            .ok_or_else(|| format!("pattern '{text}' has an unclosed '['"))?;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let hi = match chars.peek() {
                            Some('-') => {
                                chars.next();
                                match chars.next_if(|&c| c != ']') {
                                    Some(hi) => hi,
                                    None => {
                                        // A trailing '-' is literal: `[a-]`.
                                        items.push(('-', '-'));
                                        c
                                    }
                                }
                            }
                            _ => c,
                        };
                        if hi < c {
                            return Err(format!("pattern '{text}' has a backwards range {c}-{hi}"));
                        }
                        items.push((c, hi));
                    }
                    Token::Set { negated, items }
                }
                c => Token::Char(c),
            });
        }
        Ok(Glob { tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        pattern.parse::<Glob>().unwrap().matches(name)
    }

    #[test]
    fn matches_like_a_shell() {
        for (pattern, name) in [
            ("trurl", "trurl"),
            ("*", ""),
            ("*", "anything/at/all"),
            ("trurl*", "trurl.json"),
            ("*.sig", "trurl.sig"),
            ("*.json", "a.b.json"),
            ("t?url", "trurl"),
            ("[ct]url", "curl"),
            ("[a-z]*", "jq"),
            ("[!.]*", "CHECKSUM"),
            ("[^.]*", "trurl"),
            ("[]]", "]"),
            ("[a-]", "-"),
            ("\\*", "*"),
            ("*a*b*c*", "xxaxxbxxcxx"),
            ("bin/*", "bin/tool"),
        ] {
            assert!(m(pattern, name), "{pattern} should match {name}");
        }
        for (pattern, name) in [
            ("trurl", "trurl.json"),
            ("*.sig", "trurl.sig.bak"),
            ("?", ""),
            ("t?url", "turl"),
            ("[ct]url", "purl"),
            ("[!.]*", ".hidden"),
            ("\\*", "x"),
            ("*a*b*c*", "xxaxxcxxbxx"),
        ] {
            assert!(!m(pattern, name), "{pattern} should not match {name}");
        }
    }

    #[test]
    fn refuses_broken_patterns() {
        for bad in ["[abc", "x\\", "[z-a]", "["] {
            assert!(bad.parse::<Glob>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let long = "a".repeat(10_000);
        assert!(!m(&format!("{}b", "*a".repeat(50)), &long));
    }
}
