//! The one task that writes to the upgraded connection. Everything the session sends goes
//! through its queue, so frames never interleave and header blocks are compressed in the
//! order they appear on the wire (the compression context depends on that order).

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::compress::HeaderCompressor;
use crate::error::Error;
use crate::frame::{
    ControlFrame, GOAWAY_OK, encode_control, encode_data_head, encode_header_block,
};
use crate::session::Activity;

/// What the session asks the writer to send.
#[derive(Debug)]
pub enum Outgoing {
    /// SYN_REPLY with an empty header block (what upstream replies to every accepted stream).
    Reply {
        stream_id: u32,
    },
    Reset {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    Data {
        stream_id: u32,
        data: Bytes,
        fin: bool,
    },
    /// GOAWAY, then flush and shut the write side down; the writer ends.
    GoAway {
        last_good_stream_id: u32,
    },
}

/// How many queued items are written before a flush is forced.
const MAX_BATCH: usize = 64;

pub async fn run<W: AsyncWrite + Unpin>(
    io: W,
    mut queue: mpsc::Receiver<Outgoing>,
    activity: &Activity,
) -> Result<(), Error> {
    let mut out = BufWriter::with_capacity(64 << 10, io);
    let mut compressor = HeaderCompressor::new()?;
    let mut frame = Vec::with_capacity(64);
    while let Some(mut item) = queue.recv().await {
        let mut batch = 0;
        loop {
            frame.clear();
            let done = matches!(item, Outgoing::GoAway { .. });
            match item {
                Outgoing::Reply { stream_id } => {
                    let header_block = compressor.compress(&encode_header_block(&Vec::new()))?;
                    let reply = ControlFrame::SynReply { stream_id, flags: 0, header_block };
                    encode_control(&reply, &mut frame)?;
                    out.write_all(&frame).await?;
                }
                Outgoing::Reset { stream_id, status } => {
                    encode_control(&ControlFrame::RstStream { stream_id, status }, &mut frame)?;
                    out.write_all(&frame).await?;
                }
                Outgoing::Ping { id } => {
                    encode_control(&ControlFrame::Ping { id }, &mut frame)?;
                    out.write_all(&frame).await?;
                }
                Outgoing::Data { stream_id, data, fin } => {
                    encode_data_head(stream_id, fin, data.len(), &mut frame);
                    out.write_all(&frame).await?;
                    out.write_all(&data).await?;
                }
                Outgoing::GoAway { last_good_stream_id } => {
                    let goaway = ControlFrame::GoAway { last_good_stream_id, status: GOAWAY_OK };
                    encode_control(&goaway, &mut frame)?;
                    out.write_all(&frame).await?;
                }
            }
            activity.touch();
            if done {
                out.flush().await?;
                out.shutdown().await?;
                return Ok(());
            }
            batch += 1;
            match queue.try_recv() {
                Ok(next) if batch < MAX_BATCH => item = next,
                Ok(next) => {
                    out.flush().await?;
                    batch = 0;
                    item = next;
                }
                Err(_) => break,
            }
        }
        out.flush().await?;
    }
    out.flush().await?;
    Ok(())
}
