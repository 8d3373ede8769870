use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderList {
    pairs.iter().map(|(n, v)| (n.to_string(), vec![v.to_string()])).collect()
}

#[test]
fn accepts_kubectl_streams() {
    let h = headers(&[("streamtype", "error"), ("port", "8080"), ("requestid", "4")]);
    assert_eq!(
        parse_stream_headers(&h, 9),
        Ok(StreamRequest { kind: StreamKind::Error, port: 8080, request_id: "4".into() })
    );
    let h = headers(&[("streamtype", "data"), ("port", "65535"), ("requestid", "4")]);
    assert_eq!(parse_stream_headers(&h, 11).unwrap().kind, StreamKind::Data);
}

#[test]
fn request_id_falls_back_to_stream_ids_like_upstream() {
    let error = headers(&[("streamtype", "error"), ("port", "80")]);
    let data = headers(&[("streamtype", "data"), ("port", "80")]);
    assert_eq!(parse_stream_headers(&error, 5).unwrap().request_id, "5");
    assert_eq!(parse_stream_headers(&data, 7).unwrap().request_id, "5");
    // data stream 1 has no error stream before it: upstream computes -1
    assert_eq!(parse_stream_headers(&data, 1).unwrap().request_id, "-1");
    // an empty requestid header counts as missing
    let empty = headers(&[("streamtype", "error"), ("port", "80"), ("requestid", "")]);
    assert_eq!(parse_stream_headers(&empty, 3).unwrap().request_id, "3");
}

#[test]
fn rejects_bad_headers_with_upstream_messages() {
    let check = |pairs: &[(&str, &str)], want: &str| {
        assert_eq!(parse_stream_headers(&headers(pairs), 1).unwrap_err(), want);
    };
    check(&[("streamtype", "data")], r#""port" header is required"#);
    check(&[("streamtype", "data"), ("port", "")], r#""port" header is required"#);
    check(
        &[("streamtype", "data"), ("port", "http")],
        r#"unable to parse "http" as a port: strconv.ParseUint: parsing "http": invalid syntax"#,
    );
    check(
        &[("streamtype", "data"), ("port", "-1")],
        r#"unable to parse "-1" as a port: strconv.ParseUint: parsing "-1": invalid syntax"#,
    );
    check(
        &[("streamtype", "data"), ("port", "65536")],
        r#"unable to parse "65536" as a port: strconv.ParseUint: parsing "65536": value out of range"#,
    );
    check(
        &[("streamtype", "data"), ("port", "99999999999999999999999")],
        r#"unable to parse "99999999999999999999999" as a port: strconv.ParseUint: parsing "99999999999999999999999": value out of range"#,
    );
    check(&[("streamtype", "data"), ("port", "0")], r#"port "0" must be > 0"#);
    check(&[("port", "80")], r#""streamtype" header is required"#);
    check(&[("port", "80"), ("streamtype", "stdin")], r#"invalid stream type "stdin""#);
    // port is checked before the stream type, as upstream
    check(
        &[("port", "x"), ("streamtype", "bogus")],
        r#"unable to parse "x" as a port: strconv.ParseUint: parsing "x": invalid syntax"#,
    );
}

#[test]
fn pairs_complete_in_either_order() {
    let mut pairs = Pairs::default();
    assert!(matches!(
        pairs.add("0", StreamKind::Error, 1),
        AddOutcome::Incomplete { new_generation: Some(_) }
    ));
    assert_eq!(pairs.add("0", StreamKind::Data, 3), AddOutcome::Complete { data: 3, error: 1 });
    assert!(matches!(
        pairs.add("1", StreamKind::Data, 5),
        AddOutcome::Incomplete { new_generation: Some(_) }
    ));
    assert_eq!(pairs.add("1", StreamKind::Error, 7), AddOutcome::Complete { data: 5, error: 7 });
    assert_eq!(pairs.len(), 0);
}

#[test]
fn duplicate_stream_type_is_reported_on_the_error_stream() {
    let mut pairs = Pairs::default();
    pairs.add("x", StreamKind::Error, 1);
    assert_eq!(
        pairs.add("x", StreamKind::Error, 3),
        AddOutcome::Duplicate {
            message: "error processing stream for request x: error stream already assigned".into(),
            error_stream: Some(1),
        }
    );
    let mut pairs = Pairs::default();
    pairs.add("y", StreamKind::Data, 1);
    assert_eq!(
        pairs.add("y", StreamKind::Data, 3),
        AddOutcome::Duplicate {
            message: "error processing stream for request y: data stream already assigned".into(),
            error_stream: None,
        }
    );
}

#[test]
fn expiry_only_hits_the_pair_its_timer_was_for() {
    let mut pairs = Pairs::default();
    let AddOutcome::Incomplete { new_generation: Some(first) } =
        pairs.add("0", StreamKind::Error, 1)
    else {
        panic!("expected a new pair");
    };
    pairs.add("0", StreamKind::Data, 3);
    // the request id is reused by a new pair; the old timer must not remove it
    let AddOutcome::Incomplete { new_generation: Some(second) } =
        pairs.add("0", StreamKind::Error, 5)
    else {
        panic!("expected a new pair");
    };
    assert_ne!(first, second);
    assert_eq!(pairs.expire("0", first), None);
    let expired = pairs.expire("0", second).unwrap();
    assert_eq!(expired.error, Some(5));
    assert_eq!(expired.data, None);
    assert_eq!(pairs.len(), 0);
}

#[test]
fn messages_have_upstream_shape() {
    assert_eq!(
        forward_error_message(8080, "nginx", "1234-abcd", "connection refused"),
        "error forwarding port 8080 to pod nginx, uid 1234-abcd: connection refused"
    );
    assert_eq!(creation_timeout_message("7"), "(request=7) timed out waiting for streams");
}
