use super::*;

fn round_trip(frame: ControlFrame) {
    let mut bytes = Vec::new();
    encode_control(&frame, &mut bytes).unwrap();
    let head: [u8; 8] = bytes[..8].try_into().unwrap();
    let FrameHead::Control { version, frame_type, flags, length } = FrameHead::parse(head) else {
        panic!("not a control frame: {bytes:?}");
    };
    assert_eq!(length, bytes.len() - 8);
    let decoded = decode_control(version, frame_type, flags, &bytes[8..]).unwrap();
    assert_eq!(decoded, frame);
}

#[test]
fn control_frames_round_trip() {
    round_trip(ControlFrame::SynStream {
        stream_id: 7,
        associated_to: 0,
        priority: 3,
        flags: FLAG_FIN,
        header_block: vec![1, 2, 3],
    });
    round_trip(ControlFrame::SynReply { stream_id: 9, flags: 0, header_block: vec![0xaa; 40] });
    round_trip(ControlFrame::Headers { stream_id: 9, flags: FLAG_FIN, header_block: vec![] });
    round_trip(ControlFrame::RstStream { stream_id: 3, status: rst::CANCEL });
    round_trip(ControlFrame::Settings { flags: 0, entries: vec![(1, 7, 65536), (0, 4, 100)] });
    round_trip(ControlFrame::Ping { id: 1 });
    round_trip(ControlFrame::GoAway { last_good_stream_id: 11, status: GOAWAY_OK });
    round_trip(ControlFrame::WindowUpdate { stream_id: 5, delta: 1 << 20 });
}

#[test]
fn wire_layout_of_a_ping_and_a_reset() {
    let mut bytes = Vec::new();
    encode_control(&ControlFrame::Ping { id: 0x0102_0304 }, &mut bytes).unwrap();
    assert_eq!(bytes, [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4]);

    bytes.clear();
    encode_control(&ControlFrame::RstStream { stream_id: 3, status: rst::CANCEL }, &mut bytes)
        .unwrap();
    assert_eq!(bytes, [0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]);
}

#[test]
fn data_head_layout_and_parse() {
    let mut bytes = Vec::new();
    encode_data_head(5, true, 0x01_0203, &mut bytes);
    assert_eq!(bytes, [0, 0, 0, 5, 0x01, 0x01, 0x02, 0x03]);
    assert_eq!(
        FrameHead::parse(bytes.try_into().unwrap()),
        FrameHead::Data { stream_id: 5, flags: FLAG_FIN, length: 0x01_0203 }
    );
}

#[test]
fn syn_stream_priority_uses_the_top_three_bits() {
    let body = [0, 0, 0, 1, 0, 0, 0, 0, 0b1110_0000, 0];
    let frame = decode_control(3, TYPE_SYN_STREAM, 0, &body).unwrap();
    assert!(matches!(frame, ControlFrame::SynStream { stream_id: 1, priority: 7, .. }));
}

#[test]
fn malformed_control_frames_are_errors() {
    // wrong version
    assert!(decode_control(2, TYPE_PING, 0, &[0, 0, 0, 1]).is_err());
    // short bodies
    assert!(decode_control(3, TYPE_SYN_STREAM, 0, &[0; 9]).is_err());
    assert!(decode_control(3, TYPE_SYN_REPLY, 0, &[0; 3]).is_err());
    assert!(decode_control(3, TYPE_RST_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0]).is_err());
    assert!(decode_control(3, TYPE_GOAWAY, 0, &[0; 4]).is_err());
    assert!(decode_control(3, TYPE_WINDOW_UPDATE, 0, &[0; 12]).is_err());
    // zero ids and statuses
    assert!(decode_control(3, TYPE_SYN_STREAM, 0, &[0; 10]).is_err());
    assert!(decode_control(3, TYPE_PING, 0, &[0, 0, 0, 0]).is_err());
    assert!(decode_control(3, TYPE_RST_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0]).is_err());
    // flags where none are allowed
    assert!(decode_control(3, TYPE_PING, 1, &[0, 0, 0, 1]).is_err());
    // a SETTINGS count that does not match the body
    assert!(decode_control(3, TYPE_SETTINGS, 0, &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
}

#[test]
fn unknown_control_types_are_reported_not_rejected() {
    assert_eq!(
        decode_control(3, 10, 0, &[1, 2, 3]).unwrap(),
        ControlFrame::Unknown { frame_type: 10 }
    );
}

#[test]
fn header_blocks_round_trip_with_multiple_values() {
    let headers: HeaderList = vec![
        ("streamtype".into(), vec!["data".into()]),
        ("port".into(), vec!["8080".into()]),
        ("x-multi".into(), vec!["a".into(), "b".into(), String::new()]),
    ];
    let block = encode_header_block(&headers);
    assert_eq!(decode_header_block(&block).unwrap(), headers);
    assert_eq!(header_value(&headers, "Port"), Some("8080"));
    assert_eq!(header_value(&headers, "requestid"), None);
}

#[test]
fn empty_header_block_is_four_zero_bytes() {
    assert_eq!(encode_header_block(&Vec::new()), [0, 0, 0, 0]);
    assert!(decode_header_block(&[0, 0, 0, 0]).unwrap().is_empty());
}

#[test]
fn bad_header_blocks_are_errors() {
    // a count far beyond the block's size must not allocate or loop
    assert!(decode_header_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
    // truncated name
    assert!(decode_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a', 0, 0, 0, 0]).is_err());
    // name length near u32::MAX
    assert!(decode_header_block(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
    // uppercase name
    let upper = encode_header_block_raw(&[("Port", "1")]);
    assert!(decode_header_block(&upper).is_err());
    // duplicate name
    let dup = encode_header_block_raw(&[("port", "1"), ("port", "2")]);
    assert!(decode_header_block(&dup).is_err());
    // trailing bytes
    let mut trailing = encode_header_block_raw(&[("port", "1")]);
    trailing.push(0);
    assert!(decode_header_block(&trailing).is_err());
    // empty input
    assert!(decode_header_block(&[]).is_err());
}

/// Like `encode_header_block` but without lowercasing, to produce invalid blocks.
fn encode_header_block_raw(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_be_bytes().to_vec();
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}
