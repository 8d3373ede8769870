//! Port-forward sessions driven by the test SPDY client against real loopback TCP servers.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_one_connection_to_an_echo_server() {
    let echo = echo_server().await;
    let mut s = Session::start(MapDialer::new(&[(8080, echo)]), options());
    let (mut error, mut data) = s.client.open_pair(8080, "0").await;

    data.write(b"hello, ").await;
    data.write(b"pod").await;
    assert_eq!(data.read_exact(10).await, b"hello, pod");

    // client done sending: the pod sees EOF, the echo server closes, FIN comes back
    data.fin().await;
    assert_eq!(data.read_to_fin().await, b"");
    // no error message, just FIN on the error stream
    assert_eq!(error.read_to_fin().await, b"");
    // what kubectl does last
    data.reset().await;

    s.client.shutdown().await;
    s.result().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_speaks_first_is_heard_after_the_reply() {
    let pod = banner_server(b"SSH-2.0-test\r\n").await;
    let mut s = Session::start(MapDialer::new(&[(22, pod)]), options());
    // The pod's first bytes must not overtake the data stream's SYN_REPLY (spdystream
    // drops data on a stream it has no reply for); `open_pair` insists on the reply coming
    // first. The race this guards against is narrow, hence many connections.
    for id in 0..20 {
        let (_error, mut data) = s.client.open_pair(22, &id.to_string()).await;
        assert_eq!(data.read_exact(14).await, b"SSH-2.0-test\r\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_connections_on_one_session() {
    let echo = echo_server().await;
    let mut s = Session::start(MapDialer::new(&[(80, echo)]), options());
    let mut pairs = Vec::new();
    for id in 0..3 {
        pairs.push(s.client.open_pair(80, &id.to_string()).await);
    }
    // interleave writes across the three connections
    for round in 0..4u8 {
        for (i, (_, data)) in pairs.iter().enumerate() {
            data.write(&pattern(1000, round * 10 + i as u8)).await;
        }
    }
    for (i, (_, data)) in pairs.iter_mut().enumerate() {
        let mut want = Vec::new();
        for round in 0..4u8 {
            want.extend(pattern(1000, round * 10 + i as u8));
        }
        assert_eq!(data.read_exact(4000).await, want, "connection {i}");
    }
    for (error, data) in &mut pairs {
        data.fin().await;
        assert_eq!(data.read_to_fin().await, b"");
        assert_eq!(error.read_to_fin().await, b"");
    }
    s.client.shutdown().await;
    s.result().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_8_mib_each_way() {
    const SIZE: usize = 8 << 20;
    let echo = echo_server().await;
    let mut s = Session::start(MapDialer::new(&[(9000, echo)]), options());
    let (mut error, mut data) = s.client.open_pair(9000, "0").await;
    let payload = Arc::new(pattern(SIZE, 7));

    // Send in kubectl's 32 KiB frames while reading the echo concurrently.
    let sender = {
        let payload = payload.clone();
        let writer = data.writer();
        tokio::spawn(async move {
            for chunk in payload.chunks(32 << 10) {
                writer.write(chunk).await;
            }
            writer.fin().await;
        })
    };
    let echoed = tokio::time::timeout(WAIT, data.read_to_fin()).await.expect("8 MiB echo");
    sender.await.unwrap();
    assert_eq!(echoed.len(), SIZE);
    assert!(echoed == *payload, "echoed bytes differ");
    assert_eq!(error.read_to_fin().await, b"");
    s.client.shutdown().await;
    s.result().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_failure_is_reported_on_the_error_stream() {
    let refused = closed_port().await;
    let mut s = Session::start(MapDialer::new(&[(8080, refused)]), options());
    let (mut error, mut data) = s.client.open_pair(8080, "0").await;
    let message = String::from_utf8(error.read_to_fin().await).unwrap();
    assert!(
        message.starts_with("error forwarding port 8080 to pod web-0, uid uid-1: "),
        "{message}"
    );
    assert!(message.to_lowercase().contains("refused"), "{message}");
    assert_eq!(data.read_to_fin().await, b"");

    // the session goes on: a port without a listener at all
    let (mut error, mut data) = s.client.open_pair(9999, "1").await;
    assert_eq!(
        String::from_utf8(error.read_to_fin().await).unwrap(),
        "error forwarding port 9999 to pod web-0, uid uid-1: no listener for port 9999"
    );
    assert_eq!(data.read_to_fin().await, b"");
    s.client.shutdown().await;
    s.result().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_headers_reset_the_stream_and_the_session_goes_on() {
    let echo = echo_server().await;
    let dialer = MapDialer::new(&[(8080, echo)]);
    let mut s = Session::start(dialer.clone(), options());
    let bad: [&[(&str, &str)]; 5] = [
        &[("streamtype", "data"), ("port", "http"), ("requestid", "0")],
        &[("streamtype", "data"), ("port", "0"), ("requestid", "0")],
        &[("streamtype", "data"), ("port", "70000"), ("requestid", "0")],
        &[("streamtype", "data"), ("requestid", "0")],
        &[("streamtype", "stdin"), ("port", "8080"), ("requestid", "0")],
    ];
    for headers in bad {
        let mut stream = s.client.open(headers).await;
        assert_eq!(stream.next().await, StreamEvent::Reset(5), "{headers:?}");
    }
    let (_error, mut data) = s.client.open_pair(8080, "1").await;
    data.write(b"still works").await;
    assert_eq!(data.read_exact(11).await, b"still works");
    assert_eq!(dialer.dials.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pings_are_echoed() {
    let mut s = Session::start(MapDialer::new(&[]), options());
    s.client.write_raw(&client::ping_frame(1)).await.unwrap();
    assert_eq!(s.client.next_conn_event().await, ConnEvent::Ping(1));
    // an even id would answer a server ping: not echoed; the next odd one is
    s.client.write_raw(&client::ping_frame(2)).await.unwrap();
    s.client.write_raw(&client::ping_frame(3)).await.unwrap();
    assert_eq!(s.client.next_conn_event().await, ConnEvent::Ping(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_compression_context_spans_many_frames() {
    let echo = echo_server().await;
    let mut s = Session::start(MapDialer::new(&[(7000, echo)]), options());
    // Twenty SYN_STREAMs and SYN_REPLYs through one context each way, including a
    // rejected one and a bulky header; every reply must still decode.
    let mut pairs = Vec::new();
    for i in 0..10 {
        if i == 4 {
            let bulky = "x".repeat(3000);
            let mut bad =
                s.client.open(&[("streamtype", "bogus"), ("port", "1"), ("x-pad", &bulky)]).await;
            assert_eq!(bad.next().await, StreamEvent::Reset(5));
        }
        pairs.push(s.client.open_pair(7000, &format!("req-{i}")).await);
    }
    let (_, last) = pairs.last_mut().unwrap();
    last.write(b"ok").await;
    assert_eq!(last.read_exact(2).await, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_ends_the_session_with_an_error() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("SPDY/2 control frame", vec![0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]),
        ("oversized control frame", vec![0x80, 0x03, 0x00, 0x01, 0x00, 0xff, 0xff, 0xff]),
        ("PING with a 3-byte body", vec![0x80, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 1]),
        ("data on stream 0", client::data_frame(0, false, b"x")),
        ("RST_STREAM status 0", client::rst_frame(1, 0)),
        (
            "SYN_STREAM whose header block is not zlib",
            [
                vec![0x80, 0x03, 0x00, 0x01, 0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
                vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x01],
            ]
            .concat(),
        ),
        ("a frame cut short", vec![0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0]),
        (
            "random bytes",
            client::data_frame(1, false, &[]).into_iter().chain(pattern(64, 3)).collect(),
        ),
    ];
    for (name, bytes) in cases {
        let s = Session::start(MapDialer::new(&[]), options());
        s.client.write_raw(&bytes).await.unwrap();
        s.client.shutdown().await;
        let result = s.result().await;
        assert!(result.is_err(), "{name}: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppercase_or_forbidden_headers_end_the_session() {
    let s = Session::start(MapDialer::new(&[]), options());
    let mut s = s;
    s.client.open(&[("Port", "80"), ("streamtype", "data")]).await;
    let err = s.result().await.unwrap_err();
    assert!(err.to_string().contains("lowercase"), "{err}");

    let mut s = Session::start(MapDialer::new(&[]), options());
    s.client.open(&[("port", "80"), ("streamtype", "data"), ("host", "x")]).await;
    let err = s.result().await.unwrap_err();
    assert!(err.to_string().contains("host"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ends_when_the_client_closes_and_pod_connections_close() {
    let (addr, mut accepted) = handing_server().await;
    let mut s = Session::start(MapDialer::new(&[(5432, addr)]), options());
    let (_error, data) = s.client.open_pair(5432, "0").await;
    data.write(b"ping").await;
    let mut pod = tokio::time::timeout(WAIT, accepted.recv()).await.unwrap().unwrap();
    let mut buf = [0u8; 4];
    pod.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    s.client.shutdown().await;
    s.result().await.unwrap();
    // the pod connection was closed by the server's end
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, pod.read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_ends_the_session() {
    let echo = echo_server().await;
    let mut s = Session::start(MapDialer::new(&[(80, echo)]), options());
    let (_error, mut _data) = s.client.open_pair(80, "0").await;
    s.client.write_raw(&client::goaway_frame(3)).await.unwrap();
    // the server resets what is still open and says goodbye
    assert_eq!(
        s.client.next_conn_event().await,
        ConnEvent::GoAway { last_good_stream_id: 3, status: 0 }
    );
    assert_eq!(_data.next().await, StreamEvent::Reset(5));
    s.result().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_without_request_id_pair_by_stream_id() {
    let echo = echo_server().await;
    let mut s = Session::start(MapDialer::new(&[(80, echo)]), options());
    let mut error = s.client.open(&[("streamtype", "error"), ("port", "80")]).await;
    error.expect_reply().await;
    let mut data = s.client.open(&[("streamtype", "data"), ("port", "80")]).await;
    data.expect_reply().await;
    data.write(b"old client").await;
    assert_eq!(data.read_exact(10).await, b"old client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sent_before_the_pair_is_complete_is_delivered() {
    let echo = echo_server().await;
    let mut s = Session::start(MapDialer::new(&[(80, echo)]), options());
    let mut data =
        s.client.open(&[("streamtype", "data"), ("port", "80"), ("requestid", "r")]).await;
    data.expect_reply().await;
    data.write(b"early").await;
    let mut error =
        s.client.open(&[("streamtype", "error"), ("port", "80"), ("requestid", "r")]).await;
    error.expect_reply().await;
    assert_eq!(data.read_exact(5).await, b"early");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_pair_times_out_with_a_message() {
    let options = rudder_portforward::Options {
        stream_creation_timeout: Duration::from_millis(200),
        ..options()
    };
    let mut s = Session::start(MapDialer::new(&[]), options);
    let mut error =
        s.client.open(&[("streamtype", "error"), ("port", "80"), ("requestid", "9")]).await;
    error.expect_reply().await;
    assert_eq!(
        String::from_utf8(error.read_to_fin().await).unwrap(),
        "(request=9) timed out waiting for streams"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_stream_is_reported_and_reset() {
    let mut s = Session::start(MapDialer::new(&[]), options());
    let mut error =
        s.client.open(&[("streamtype", "error"), ("port", "80"), ("requestid", "7")]).await;
    error.expect_reply().await;
    let mut again =
        s.client.open(&[("streamtype", "error"), ("port", "80"), ("requestid", "7")]).await;
    assert_eq!(again.next().await, StreamEvent::Reset(5));
    assert_eq!(
        error.next().await,
        StreamEvent::Data(
            b"error processing stream for request 7: error stream already assigned".to_vec()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_limit_refuses_extra_streams() {
    let options = rudder_portforward::Options { max_streams: 2, ..options() };
    let mut s = Session::start(MapDialer::new(&[]), options);
    for i in 0..2 {
        let mut e = s
            .client
            .open(&[("streamtype", "error"), ("port", "80"), ("requestid", &i.to_string())])
            .await;
        e.expect_reply().await;
    }
    let mut third =
        s.client.open(&[("streamtype", "error"), ("port", "80"), ("requestid", "2")]).await;
    assert_eq!(third.next().await, StreamEvent::Reset(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ids_must_grow() {
    let mut s = Session::start(MapDialer::new(&[]), options());
    let mut first = s.client.open_id(5, &[("streamtype", "error"), ("port", "80")], 0).await;
    first.expect_reply().await;
    let mut lower = s.client.open_id(3, &[("streamtype", "error"), ("port", "80")], 0).await;
    assert_eq!(lower.next().await, StreamEvent::Reset(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_times_out() {
    let options =
        rudder_portforward::Options { idle_timeout: Duration::from_millis(300), ..options() };
    let mut s = Session::start(MapDialer::new(&[]), options);
    s.client.write_raw(&client::ping_frame(1)).await.unwrap();
    assert_eq!(s.client.next_conn_event().await, ConnEvent::Ping(1));
    // then nothing: the server gives up and says goodbye
    assert!(matches!(s.client.next_conn_event().await, ConnEvent::GoAway { .. }));
    let err = s.result().await.unwrap_err();
    assert!(matches!(err, rudder_portforward::Error::IdleTimeout(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_half_close_keeps_the_pod_answer_flowing() {
    let pod = count_then_reply_server().await;
    let mut s = Session::start(MapDialer::new(&[(80, pod)]), options());
    let (mut error, mut data) = s.client.open_pair(80, "0").await;
    data.write(&pattern(100_000, 1)).await;
    data.fin().await;
    assert_eq!(data.read_to_fin().await, b"got 100000 bytes");
    assert_eq!(error.read_to_fin().await, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_closes_a_half_closed_connection_the_pod_keeps_open() {
    let (addr, mut accepted) = handing_server().await;
    let options = rudder_portforward::Options {
        half_close_linger: Some(Duration::from_millis(100)),
        ..options()
    };
    let mut s = Session::start(MapDialer::new(&[(80, addr)]), options);
    let (mut error, mut data) = s.client.open_pair(80, "0").await;
    data.fin().await;
    let mut pod = tokio::time::timeout(WAIT, accepted.recv()).await.unwrap().unwrap();
    // the pod sees the half-close but never closes its side; the server gives up on it
    let mut rest = Vec::new();
    pod.read_to_end(&mut rest).await.unwrap();
    assert_eq!(data.read_to_fin().await, b"");
    assert_eq!(error.read_to_fin().await, b"");
    // and the pod connection is gone
    let write = async {
        loop {
            pod.write_all(b"anyone?").await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let gone: std::io::Result<()> = tokio::time::timeout(WAIT, write).await.unwrap();
    assert!(gone.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reset_of_the_data_stream_closes_the_pod_connection() {
    let (addr, mut accepted) = handing_server().await;
    let mut s = Session::start(MapDialer::new(&[(80, addr)]), options());
    let (mut error, data) = s.client.open_pair(80, "0").await;
    let mut pod = tokio::time::timeout(WAIT, accepted.recv()).await.unwrap().unwrap();
    data.reset().await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, pod.read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
    // the pair is over: the error stream is closed
    assert_eq!(error.read_to_fin().await, b"");
}
