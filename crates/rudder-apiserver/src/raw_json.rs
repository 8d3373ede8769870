//! Just enough JSON scanning to work on stored objects without decoding them: the raw text
//! of a member (or a dotted path of members), and an object's text with `resourceVersion`
//! spliced into its metadata. The watch cache keeps objects as JSON text this way (about a
//! fifth of the memory of a decoded `serde_json::Value`) and decodes only what is asked.
//!
//! Every function returns None on text that is not well-formed where it looks; callers
//! then fall back to a full decode, which reports the error.

use std::ops::Range;

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[i]` opens a string: the index after its closing quote.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
    None
}

/// `b[i]` starts a value: the index after it.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// One member of an object: its key as written (with quotes) and its value's range.
struct Member {
    key: Range<usize>,
    value: Range<usize>,
}

/// The members of the object at `b[range]` (which must be exactly one object).
fn members(b: &[u8], range: Range<usize>) -> Option<Vec<Member>> {
    let end = range.end;
    let mut i = skip_ws(b, range.start);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return (skip_ws(&b[..end], i + 1) == end).then_some(out);
    }
    loop {
        let key_end = skip_string(b, i)?;
        let key = i..key_end;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let value_end = skip_value(b, start)?;
        out.push(Member { key, value: start..value_end });
        i = skip_ws(b, value_end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return (skip_ws(&b[..end], i + 1) == end).then_some(out),
            _ => return None,
        }
    }
}

/// Whether the quoted key `raw` (as written) is `name`.
fn key_is(raw: &[u8], name: &str) -> bool {
    let inner = &raw[1..raw.len() - 1];
    if !inner.contains(&b'\\') {
        return inner == name.as_bytes();
    }
    serde_json::from_slice::<String>(raw).is_ok_and(|k| k == name)
}

fn value_range(b: &[u8], range: Range<usize>, name: &str) -> Option<Range<usize>> {
    members(b, range)?.into_iter().find(|m| key_is(&b[m.key.clone()], name)).map(|m| m.value)
}

/// The elements of the array at `b[range]`.
fn elements(b: &[u8], range: Range<usize>) -> Option<Vec<Range<usize>>> {
    let end = range.end;
    let mut i = skip_ws(b, range.start);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b']') {
        return (skip_ws(&b[..end], i + 1) == end).then_some(out);
    }
    loop {
        let value_end = skip_value(b, i)?;
        out.push(i..value_end);
        i = skip_ws(b, value_end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return (skip_ws(&b[..end], i + 1) == end).then_some(out),
            _ => return None,
        }
    }
}

/// Where a dotted path (`spec.nodeName`; a number indexes an array) leads in `json`: Some of
/// the value's raw text, Some(None) when the path does not exist, None when the text is
/// not well-formed JSON along the way.
pub fn path<'a>(json: &'a [u8], dotted: &str) -> Option<Option<&'a [u8]>> {
    let mut range = 0..json.len();
    for part in dotted.split('.') {
        let start = skip_ws(json, range.start);
        let next = match json.get(start)? {
            b'{' => value_range(json, range.clone(), part),
            b'[' => match part.parse::<usize>() {
                Ok(index) => elements(json, range.clone())?.into_iter().nth(index),
                Err(_) => None,
            },
            _ => None,
        };
        match next {
            Some(r) => range = r,
            None => {
                // Missing, unless the text is broken: check it the slow way.
                return serde_json::from_slice::<serde::de::IgnoredAny>(json)
                    .is_ok()
                    .then_some(None);
            }
        }
    }
    Some(Some(&json[range]))
}

/// The raw text of the member `name` of the top-level object (None when missing or not
/// well-formed).
pub fn member<'a>(json: &'a [u8], name: &str) -> Option<&'a [u8]> {
    value_range(json, 0..json.len(), name).map(|r| &json[r])
}

/// `json` (an object with a `metadata` object) with `metadata.resourceVersion` set to
/// `resource_version`, placed among the other metadata keys in sorted order (as a decoded
/// and re-encoded object would have it).
pub fn with_resource_version(json: &[u8], resource_version: &str) -> Option<Vec<u8>> {
    let meta = value_range(json, 0..json.len(), "metadata")?;
    let members = members(json, meta.clone())?;
    let rv = serde_json::to_string(resource_version).ok()?;
    let mut out = Vec::with_capacity(json.len() + rv.len() + 20);
    out.extend_from_slice(&json[..meta.start]);
    out.push(b'{');
    let mut placed = false;
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, text: &[&[u8]]| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        for t in text {
            out.extend_from_slice(t);
        }
    };
    for m in &members {
        let key = &json[m.key.clone()];
        if key_is(key, "resourceVersion") {
            continue;
        }
        if !placed && &key[1..key.len() - 1] > b"resourceVersion".as_slice() {
            put(&mut out, &[b"\"resourceVersion\":", rv.as_bytes()]);
            placed = true;
        }
        put(&mut out, &[key, b":", &json[m.value.clone()]]);
    }
    if !placed {
        put(&mut out, &[b"\"resourceVersion\":", rv.as_bytes()]);
    }
    out.push(b'}');
    out.extend_from_slice(&json[meta.end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn text(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn resource_version_is_spliced_where_a_reencode_would_put_it() {
        for obj in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "d", "uid": "u"}, "spec": {"x": [1, {"y": "}"}]}}),
            json!({"metadata": {}}),
            json!({"metadata": {"annotations": {"a\"b": "c\\"}, "zz": 1}, "z": null}),
            json!({"metadata": {"resourceVersion": "7", "name": "old"}}),
            json!({"a": "{\"metadata\":1}", "metadata": {"uid": "x"}}),
        ] {
            let spliced = with_resource_version(&text(&obj), "42").unwrap();
            let mut want = obj.clone();
            want["metadata"]["resourceVersion"] = json!("42");
            assert_eq!(String::from_utf8(spliced).unwrap(), want.to_string());
        }
        // Whitespace is fine; only the metadata object is rewritten.
        let spaced = br#" { "metadata" : { "name" : "a" } , "b" : [ 1 , 2 ] } "#;
        let spliced = with_resource_version(spaced, "3").unwrap();
        let v: Value = serde_json::from_slice(&spliced).unwrap();
        assert_eq!(v, json!({"metadata": {"name": "a", "resourceVersion": "3"}, "b": [1, 2]}));
    }

    #[test]
    fn objects_without_metadata_or_not_json_are_refused() {
        assert!(with_resource_version(b"{\"kind\":\"X\"}", "1").is_none());
        assert!(with_resource_version(b"{\"metadata\":[]}", "1").is_none());
        assert!(with_resource_version(b"{\"metadata\":{\"a\":1}", "1").is_none());
        assert!(with_resource_version(b"{\"metadata\":{\"a\" 1}}", "1").is_none());
        assert!(with_resource_version(b"[1]", "1").is_none());
    }

    #[test]
    fn paths_find_members_and_array_elements() {
        let obj = json!({
            "metadata": {"name": "p", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": null}
        });
        let t = text(&obj);
        let get = |p: &str| path(&t, p).unwrap().map(|r| String::from_utf8(r.to_vec()).unwrap());
        assert_eq!(get("spec.nodeName").as_deref(), Some("\"n1\""));
        assert_eq!(get("spec.hostNetwork").as_deref(), Some("true"));
        assert_eq!(get("spec.containers.1.name").as_deref(), Some("\"b\""));
        assert_eq!(get("metadata.labels").as_deref(), Some("{\"app\":\"web\"}"));
        assert_eq!(get("status.podIP").as_deref(), Some("null"));
        assert_eq!(get("spec.containers.2.name"), None);
        assert_eq!(get("spec.nodeName.x"), None);
        assert_eq!(get("nothing"), None);
        assert_eq!(member(&t, "status"), Some(br#"{"phase":"Running","podIP":null}"#.as_slice()));
        assert!(path(b"{\"spec\":{\"a\":1", "spec.b").is_none(), "broken text is not 'missing'");
    }
}
