//! OCI digests (`sha256:<hex>`), of bytes or of what passes through a writer.

use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// The digest of `bytes`.
pub fn of(bytes: &[u8]) -> String {
    format!("sha256:{}", osbuild_stages::lock::sha256(bytes))
}

/// A writer that hashes and counts what passes through it.
pub struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The writer back, with the digest and size of what was written.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", osbuild_stages::lock::hex(&self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
