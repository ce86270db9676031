//! zstd compression of payloads, with one context per thread.

use std::io::Read as _;

use crate::MAX_DECOMPRESSED;

thread_local! {
    /// A zstd context per thread and level: making one per payload costs more than
    /// compressing a small payload.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// `bytes` compressed at `level`, with this thread's context.
pub(crate) fn compress(bytes: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, compressor)) => compressor.compress(bytes),
            None => zstd::bulk::compress(bytes, level),
        }
    })
}

thread_local! {
    /// A zstd decompression context per thread: making one per payload costs more than
    /// decompressing a small payload (about 30 µs per 1 KiB get).
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The zstd frame `bytes` decompressed: with this thread's context into exactly the size
/// its header declares (every frame `compress` writes declares it), or streamed for a
/// frame that does not; never more than [`MAX_DECOMPRESSED`] bytes.
pub(crate) fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, ErrorKind as IoKind};
    match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(size)) if size > MAX_DECOMPRESSED => Err(IoError::new(
            IoKind::InvalidData,
            format!("the frame claims {size} bytes, more than {MAX_DECOMPRESSED}"),
        )),
        Ok(Some(size)) => DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Decompressor::new()?);
            }
            match slot.as_mut() {
                Some(decompressor) => decompressor.decompress(bytes, size as usize),
                None => zstd::bulk::decompress(bytes, size as usize),
            }
        }),
        Ok(None) => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(bytes)?
                .take(MAX_DECOMPRESSED)
                .read_to_end(&mut out)?;
            Ok(out)
        }
        Err(_) => Err(IoError::new(IoKind::InvalidData, "not a zstd frame")),
    }
}
