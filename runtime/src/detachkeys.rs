//! `--detach-keys`: moby's `term.ToBytes` (comma-separated single characters, `ctrl-@`..
//! `ctrl-_`, `DEL`) and its escape proxy, which holds back keystrokes that may begin the
//! sequence and sends them on when the next one does not continue it.

/// Docker's default: ctrl-p, ctrl-q.
pub const DEFAULT: &[u8] = &[0x10, 0x11];

/// A value moby's `term.ToBytes` refuses; the callers word it as Docker does per command
/// ("Invalid detach keys (..) provided" for run/start/attach, "Invalid escape keys" for exec).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Unknown character: '{0}'")]
pub struct UnknownKey(pub String);

/// The key codes `keys` names, as moby's `term.ToBytes` (no trimming: " a" is refused).
pub fn parse(keys: &str) -> Result<Vec<u8>, UnknownKey> {
    const CTRL: &str = "@abcdefghijklmnopqrstuvwxyz[\\]^_";
    keys.split(',')
        .map(|k| {
            if k.len() == 1 {
                return Ok(k.as_bytes()[0]);
            }
            if k == "DEL" {
                return Ok(127);
            }
            k.strip_prefix("ctrl-")
                .filter(|c| c.len() == 1)
                .and_then(|c| CTRL.find(c))
                .map(|i| i as u8)
                .ok_or_else(|| UnknownKey(k.to_string()))
        })
        .collect()
}

/// Watches keystrokes for the sequence.
#[derive(Debug, Clone)]
pub struct Escape {
    keys: Vec<u8>,
    /// How many of `keys` were typed last, held back.
    matched: usize,
}

/// What the keystrokes of one read come to.
#[derive(Debug, PartialEq, Eq)]
pub enum Keys {
    /// Send these on.
    Forward(Vec<u8>),
    /// The sequence was typed: send these on (what came before it), then detach.
    Detach(Vec<u8>),
}

impl Escape {
    pub fn new(keys: Vec<u8>) -> Escape {
        Escape { keys, matched: 0 }
    }

    /// Byte by byte, so a sequence split over reads or arriving in one (a paste, a test's
    /// write) is found either way; Docker's proxy only matches reads of one byte.
    pub fn feed(&mut self, input: &[u8]) -> Keys {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return Keys::Forward(out);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return Keys::Detach(out);
                }
                continue;
            }
            // Not the sequence after all: what was held back goes on, and this key may
            // begin it again.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return Keys::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Keys::Forward(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_as_moby_term_to_bytes() {
        assert_eq!(parse("ctrl-p,ctrl-q").unwrap(), DEFAULT);
        assert_eq!(parse("a,ctrl-@,ctrl-_,DEL,,").unwrap_err().0, "");
        assert_eq!(parse("a,ctrl-@,ctrl-_,DEL").unwrap(), [b'a', 0, 31, 127]);
        assert_eq!(parse("ctrl-\\").unwrap(), [28]);
        for bad in ["ctrl-", "ctrl-pp", "ctrl-P", " a", "ab", "del"] {
            assert_eq!(parse(bad), Err(UnknownKey(bad.into())), "{bad}");
        }
    }

    #[test]
    fn the_sequence_is_found_within_and_across_reads() {
        let mut e = Escape::new(DEFAULT.to_vec());
        assert_eq!(e.feed(b"ab\x10"), Keys::Forward(b"ab".to_vec()));
        assert_eq!(e.feed(b"\x11"), Keys::Detach(vec![]));
        assert_eq!(e.feed(b"x\x10\x11y"), Keys::Detach(b"x".to_vec()));
        // A held-back ctrl-p goes on when the next key is not ctrl-q.
        assert_eq!(e.feed(b"\x10"), Keys::Forward(vec![]));
        assert_eq!(e.feed(b"z"), Keys::Forward(b"\x10z".to_vec()));
        assert_eq!(e.feed(b"\x10\x10\x11"), Keys::Detach(b"\x10".to_vec()));
        let mut one = Escape::new(vec![b'q']);
        assert_eq!(one.feed(b"abq"), Keys::Detach(b"ab".to_vec()));
    }
}
