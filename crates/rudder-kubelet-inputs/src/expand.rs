//! `$(VAR)` expansion as Kubernetes does it in env values, command, args and subPathExpr:
//! `$(NAME)` is replaced by the variable's value when it is defined and left as written when
//! it is not; `$$` is an escaped `$`; any other `$` (including an unclosed `$(`) is literal.

use std::collections::HashMap;

/// Expands `input`, asking `lookup` for each `$(NAME)`; `None` keeps `$(NAME)` as written.
pub fn expand(input: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(value) => out.push_str(&value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // `$` followed by any other character: both kept.
                    let c = rest.chars().next().map(char::len_utf8).unwrap_or(1);
                    out.push('$');
                    out.push_str(&rest[..c]);
                    c
                }
            };
            cursor += advance + 1;
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// Expands `$(VAR)` in a container's command or args against its final environment.
pub fn expand_command(args: &[String], env: &[(String, String)]) -> Vec<String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    args.iter().map(|a| expand(a, |name| map.get(name).map(|v| (*v).to_owned()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![("A".into(), "alpha".into()), ("EMPTY".into(), String::new())]
    }

    fn x(s: &str) -> String {
        expand_command(&[s.to_owned()], &env()).remove(0)
    }

    #[test]
    fn expands_defined_and_keeps_undefined() {
        assert_eq!(x("$(A)"), "alpha");
        assert_eq!(x("pre-$(A)-post"), "pre-alpha-post");
        assert_eq!(x("$(A)$(A)"), "alphaalpha");
        assert_eq!(x("$(B)"), "$(B)");
        assert_eq!(x("$(EMPTY)x"), "x");
    }

    #[test]
    fn escapes_and_literals() {
        assert_eq!(x("$$(A)"), "$(A)");
        assert_eq!(x("$$$(A)"), "$alpha");
        assert_eq!(x("$$"), "$");
        assert_eq!(x("$"), "$");
        assert_eq!(x("a$"), "a$");
        assert_eq!(x("$A"), "$A");
        assert_eq!(x("$(A"), "$(A");
        assert_eq!(x("$()"), "$()");
        assert_eq!(x("$é$(A)"), "$éalpha");
        assert_eq!(x("no vars"), "no vars");
    }
}
