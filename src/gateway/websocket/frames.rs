//! Where WebSocket frames begin and end in a relayed byte stream (RFC 6455 §5.2), so that keygate
//! can close a connection with a close frame of its own without cutting a frame in two. Only
//! frame headers are read — two to fourteen bytes a frame, no payload, no allocation.

/// Close codes keygate sends (RFC 6455 §7.4.1).
pub(super) const POLICY_VIOLATION: u16 = 1008;
pub(super) const GOING_AWAY: u16 = 1001;

/// Follows one direction of a WebSocket stream, frame header by frame header.
#[derive(Debug, Default)]
pub(super) struct FrameCursor {
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
    /// The next frame's header, as far as it has arrived.
    header: [u8; 14],
    header_len: usize,
}

impl FrameCursor {
    /// Takes note of `bytes`, the next ones of the stream.
    pub(super) fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let passing = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= passing;
                bytes = &bytes[passing as usize..];
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len >= 2 && self.header_len == header_size(self.header[1]) {
                self.payload_left = payload_length(&self.header[..self.header_len]);
                self.header_len = 0;
            }
        }
    }

    /// Whether the stream is between two frames: a frame of keygate's may be sent now.
    pub(super) fn at_boundary(&self) -> bool {
        self.payload_left == 0 && self.header_len == 0
    }
}

/// The size of a frame header, from its second byte: the mask bit and the 7-bit length.
fn header_size(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

fn payload_length(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().unwrap_or_default()),
        short => u64::from(short),
    }
}

/// A close frame with `code` and `reason` (at most 123 bytes, cut on a character boundary);
/// masked with `mask` when it goes to the upstream, as a client's frames must be.
pub(super) fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    let mut frame = vec![0x88, payload.len() as u8];
    if let Some(mask) = mask {
        frame[1] |= 0x80;
        frame.extend_from_slice(&mask);
        payload.iter_mut().enumerate().for_each(|(i, byte)| *byte ^= mask[i % 4]);
    }
    frame.extend_from_slice(&payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: usize, masked: bool) -> Vec<u8> {
        let mut frame = vec![0x82];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload {
            0..=125 => frame.push(mask_bit | payload as u8),
            126..=65535 => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        if masked {
            frame.extend_from_slice(&[1, 2, 3, 4]);
        }
        frame.extend(std::iter::repeat_n(7u8, payload));
        frame
    }

    #[test]
    fn boundaries_are_found_whatever_the_chunks() {
        let mut stream = Vec::new();
        for (size, masked) in [(0, false), (5, true), (125, false), (126, true), (70_000, false), (3, true)] {
            stream.extend(frame(size, masked));
        }
        for chunk in [1, 2, 3, 7, 1000, stream.len()] {
            let mut cursor = FrameCursor::default();
            let mut boundaries = 0;
            for piece in stream.chunks(chunk) {
                cursor.advance(piece);
                boundaries += usize::from(cursor.at_boundary());
            }
            assert!(cursor.at_boundary(), "chunks of {chunk}: the stream ends between frames");
            assert!(boundaries >= 1);
        }
        let mut cursor = FrameCursor::default();
        cursor.advance(&frame(300, false)[..100]);
        assert!(!cursor.at_boundary(), "inside a frame");
        cursor.advance(&[0x82]);
        let mut cursor = FrameCursor::default();
        cursor.advance(&[0x82]);
        assert!(!cursor.at_boundary(), "inside a header");
    }

    #[test]
    fn a_close_frame_carries_its_code_and_a_bounded_reason() {
        assert_eq!(close_frame(1008, "NO", None), [0x88, 4, 0x03, 0xf0, b'N', b'O']);
        let masked = close_frame(1001, "", Some([0xff; 4]));
        assert_eq!(masked, [0x88, 0x82, 0xff, 0xff, 0xff, 0xff, 0x03 ^ 0xff, 0xe9 ^ 0xff]);
        assert_eq!(close_frame(1008, &"é".repeat(100), None).len(), 2 + 2 + 122);
    }
}
